// Run the labelling job from Swift: the same job the `autoannotate` command runs, with progress in your hands.
//
//     swift run annotate-folder images yolov8x.pt sam_b.pt
import Annotate
import Foundation

let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.count == 3 else {
    print("usage: annotate-folder IMAGES DET_MODEL SAM_MODEL")
    exit(1)
}
do {
    var settings = JobSettings(
        data: arguments[0], output: JobSettings.defaultOutput(for: arguments[0]),
        detector: try .identify(path: arguments[1]), segmenter: try .identify(path: arguments[2]))
    settings.empty = .skip  // as Ultralytics: no file for images without objects
    let job = try AutoAnnotator(settings: settings)  // resumes if the job exists with these settings
    let summary = try job.run { event in
        print("\(event.completed)/\(event.total) \(event.path): \(event.state.rawValue), \(event.objects) objects")
    }
    print("\(summary.done) labelled, \(summary.empty) without objects, \(summary.failed) failed → \(settings.output)")
} catch {
    print("error: \(error.localizedDescription)")
    exit(1)
}
