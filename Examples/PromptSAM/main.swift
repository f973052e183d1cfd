// Segment Anything from Swift: set the image once, then prompt it many times — a box, a foreground point,
// and a foreground point refined by a background point — each prompt costing only the mask decoder.
//
//     swift run prompt-sam sam_b.pt photo.jpg
import Foundation
import Imaging
import SegmentAnything

let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.count == 2 else {
    print("usage: prompt-sam SAM.pt IMAGE")
    exit(1)
}
do {
    let predictor = try SamPredictor(path: arguments[0])
    let image = try ImageDecoder.decode(path: arguments[1])
    predictor.setImage(image)  // the image encoder runs once, here
    let (w, h) = (Float(image.width), Float(image.height))
    let centre = SamPoint(x: w / 2, y: h / 2, label: 1)
    let prompts: [(String, [SamPoint], [SamBox])] = [
        ("box around the centre", [], [SamBox(x1: w / 4, y1: h / 4, x2: 3 * w / 4, y2: 3 * h / 4)]),
        ("foreground point at the centre", [centre], []),
        ("centre, minus a background point at the top-left", [centre, SamPoint(x: w / 8, y: h / 8, label: 0)], []),
    ]
    for (name, points, boxes) in prompts {
        let prediction = try predictor.predict(points: points, boxes: boxes)  // decoder only
        for (mask, score) in zip(prediction.masks, prediction.scores) {
            print(String(format: "%@: %d pixels, predicted IoU %.3f", name, mask.area, score))
        }
    }
} catch {
    print("error: \(error.localizedDescription)")
    exit(1)
}
