/// The shape of a Segment Anything model, read from its tensors rather than from its file name (as
/// sam.cpp's converter does): widths from the embeddings, depth from the block count, heads from the
/// relative-position tables, global-attention blocks from their table size. Named variants are the
/// configurations of segment_anything's `build_sam.py`.
public struct SamArchitecture: Equatable, Sendable {
    public enum Variant: String, Sendable {
        case vitB = "vit_b"
        case vitL = "vit_l"
        case vitH = "vit_h"
        case mobileSAM = "mobile_sam"
        case custom
    }

    public var variant: Variant
    /// Image encoder (ViT): token width, block count, heads, blocks with global attention, window size.
    public var encoderWidth: Int
    public var encoderDepth: Int
    public var encoderHeads: Int
    public var globalAttentionBlocks: [Int]
    public var windowSize: Int
    public var patchSize: Int
    /// Tokens per side of the image grid (1024 / 16 = 64).
    public var gridSize: Int
    public var mlpWidth: Int
    /// Prompt and mask decoder width (SAM: 256), mask-input channels (16), decoder MLP width (2048),
    /// two-way transformer depth (2), mask outputs besides the single one (3), IoU head depth and width.
    public var promptWidth: Int
    public var maskInputChannels: Int
    public var decoderMLPWidth: Int
    public var decoderDepth: Int
    public var multimaskOutputs: Int
    public var iouHeadDepth: Int
    public var iouHeadWidth: Int
    /// Heads of the two-way transformer: not recoverable from tensor shapes; every released SAM uses 8.
    public var decoderHeads: Int = 8

    public var imageSize: Int { gridSize * patchSize }

    /// Reads the architecture from a state dict's shapes, or nil when it is not a SAM (v1) state dict.
    public init?(_ weights: StateDict) {
        func shape(_ key: String) -> [Int]? { weights[key]?.shape }
        guard let prompt = shape("prompt_encoder.point_embeddings.0.weight"), prompt.count == 2,
            let mask = shape("prompt_encoder.mask_downscaling.3.weight"), mask.count == 4,
            let tokens = shape("mask_decoder.mask_tokens.weight"), tokens.count == 2,
            let lin1 = shape("mask_decoder.transformer.layers.0.mlp.lin1.weight"), lin1.count == 2,
            let iou = shape("mask_decoder.iou_prediction_head.layers.0.weight"), iou.count == 2
        else { return nil }
        promptWidth = prompt[1]
        maskInputChannels = mask[0]
        multimaskOutputs = tokens[0] - 1
        decoderMLPWidth = lin1[0]
        decoderDepth = (0...).prefix { weights.contains("mask_decoder.transformer.layers.\($0).norm1.weight") }.count
        iouHeadDepth = (0...).prefix { weights.contains("mask_decoder.iou_prediction_head.layers.\($0).weight") }.count
        iouHeadWidth = iou[0]

        if weights.contains("image_encoder.patch_embed.seq.0.c.weight") {
            // MobileSAM's TinyViT encoder: its own layout; the ViT fields describe nothing.
            (variant, encoderWidth, encoderDepth, encoderHeads, globalAttentionBlocks) = (.mobileSAM, 0, 0, 0, [])
            (windowSize, patchSize, gridSize, mlpWidth) = (0, 16, 64, 0)
            return
        }
        guard let pos = shape("image_encoder.pos_embed"), pos.count == 4, pos[1] == pos[2],
            let patch = shape("image_encoder.patch_embed.proj.weight"), patch.count == 4,
            let rel = shape("image_encoder.blocks.0.attn.rel_pos_h"), rel.count == 2, rel[1] > 0,
            let mlp = shape("image_encoder.blocks.0.mlp.lin1.weight"), mlp.count == 2
        else { return nil }
        encoderWidth = pos[3]
        gridSize = pos[1]
        patchSize = patch[2]
        encoderHeads = encoderWidth / rel[1]
        mlpWidth = mlp[0]
        encoderDepth = (0...).prefix { weights.contains("image_encoder.blocks.\($0).norm1.weight") }.count
        var window = 0
        var global: [Int] = []
        for block in 0..<encoderDepth {
            guard let table = shape("image_encoder.blocks.\(block).attn.rel_pos_h") else { return nil }
            let size = (table[0] + 1) / 2
            if size == gridSize { global.append(block) } else { window = size }
        }
        windowSize = window
        globalAttentionBlocks = global
        switch (encoderWidth, encoderDepth, encoderHeads, global) {
        case (768, 12, 12, [2, 5, 8, 11]): variant = .vitB
        case (1024, 24, 16, [5, 11, 17, 23]): variant = .vitL
        case (1280, 32, 16, [7, 15, 23, 31]): variant = .vitH
        default: variant = .custom
        }
    }

    /// The first size that lies outside what the models are built for, as a sentence, or nil: widths that divide
    /// into the decoder's 8 heads and the upscaling's eighths, an encoder whose heads divide its width, windows no
    /// larger than the grid, and an encoder no larger than ViT-H's (width 1,280, 32 blocks, a 64 × 64 grid of
    /// patches up to 16 pixels) — so that no file, however its tensors are shaped, can size the activations or the
    /// work beyond a released SAM's.
    public var outOfRange: String? {
        func check(_ name: String, _ value: Int, _ range: ClosedRange<Int>, multipleOf unit: Int = 1) -> String? {
            range.contains(value) && value % unit == 0
                ? nil
                : "\(name) is \(value); it must lie in \(range.lowerBound)…\(range.upperBound)"
                    + (unit > 1 ? " and be a multiple of \(unit)" : "")
        }
        var problems = [
            check("the prompt width", promptWidth, 16...4096, multipleOf: 16),
            check("the mask input's channels", maskInputChannels, 4...1024, multipleOf: 4),
            check("the decoder's MLP width", decoderMLPWidth, 1...16384),
            check("the decoder's depth", decoderDepth, 1...8),
            check("the extra mask outputs", multimaskOutputs, 0...8),
            check("the IoU head's depth", iouHeadDepth, 1...8),
            check("the IoU head's width", iouHeadWidth, 1...4096),
        ]
        if variant != .mobileSAM {
            let windowed = encoderDepth > globalAttentionBlocks.count
            problems += [
                check("the image encoder's width", encoderWidth, 1...1280),
                check("the image encoder's heads", encoderHeads, 1...encoderWidth),
                encoderWidth % max(encoderHeads, 1) == 0 ? nil : "the image encoder's heads do not divide its width",
                check("the image encoder's depth", encoderDepth, 1...32),
                check("the patch size", patchSize, 1...16),
                check("the image grid's side", gridSize, 1...64),
                check("the image encoder's MLP width", mlpWidth, 1...5120),
                windowed ? check("the attention window", windowSize, 1...gridSize) : nil,
            ]
        }
        return problems.compactMap { $0 }.first
    }

    /// Every tensor of the architecture with its shape, as `Sam.state_dict()` lists them (segment_anything's
    /// modeling/*.py). The MobileSAM encoder is not listed: its tensors are checked by the TinyViT port.
    public var expectedTensors: [(key: String, shape: [Int])] {
        var out: [(key: String, shape: [Int])] = []
        func add(_ key: String, _ shape: [Int]) { out.append((key, shape)) }
        func linear(_ key: String, _ outputs: Int, _ inputs: Int) {
            add(key + ".weight", [outputs, inputs])
            add(key + ".bias", [outputs])
        }
        func norm(_ key: String, _ width: Int) {
            add(key + ".weight", [width])
            add(key + ".bias", [width])
        }
        let (d, e, t) = (encoderWidth, promptWidth, promptWidth)
        if variant != .mobileSAM {
            add("image_encoder.pos_embed", [1, gridSize, gridSize, d])
            add("image_encoder.patch_embed.proj.weight", [d, 3, patchSize, patchSize])
            add("image_encoder.patch_embed.proj.bias", [d])
            for block in 0..<encoderDepth {
                let p = "image_encoder.blocks.\(block)."
                let size = globalAttentionBlocks.contains(block) ? gridSize : windowSize
                norm(p + "norm1", d)
                add(p + "attn.rel_pos_h", [2 * size - 1, d / encoderHeads])
                add(p + "attn.rel_pos_w", [2 * size - 1, d / encoderHeads])
                linear(p + "attn.qkv", 3 * d, d)
                linear(p + "attn.proj", d, d)
                norm(p + "norm2", d)
                linear(p + "mlp.lin1", mlpWidth, d)
                linear(p + "mlp.lin2", d, mlpWidth)
            }
            add("image_encoder.neck.0.weight", [e, d, 1, 1])
            norm("image_encoder.neck.1", e)
            add("image_encoder.neck.2.weight", [e, e, 3, 3])
            norm("image_encoder.neck.3", e)
        }
        let m = maskInputChannels
        add("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", [2, e / 2])
        for i in 0..<4 { add("prompt_encoder.point_embeddings.\(i).weight", [1, e]) }
        add("prompt_encoder.not_a_point_embed.weight", [1, e])
        add("prompt_encoder.mask_downscaling.0.weight", [m / 4, 1, 2, 2])
        add("prompt_encoder.mask_downscaling.0.bias", [m / 4])
        norm("prompt_encoder.mask_downscaling.1", m / 4)
        add("prompt_encoder.mask_downscaling.3.weight", [m, m / 4, 2, 2])
        add("prompt_encoder.mask_downscaling.3.bias", [m])
        norm("prompt_encoder.mask_downscaling.4", m)
        add("prompt_encoder.mask_downscaling.6.weight", [e, m, 1, 1])
        add("prompt_encoder.mask_downscaling.6.bias", [e])
        add("prompt_encoder.no_mask_embed.weight", [1, e])

        add("mask_decoder.iou_token.weight", [1, t])
        add("mask_decoder.mask_tokens.weight", [multimaskOutputs + 1, t])
        func attention(_ key: String, _ internalWidth: Int) {
            for projection in ["q_proj", "k_proj", "v_proj"] { linear("\(key).\(projection)", internalWidth, t) }
            linear("\(key).out_proj", t, internalWidth)
        }
        for layer in 0..<decoderDepth {
            let p = "mask_decoder.transformer.layers.\(layer)."
            attention(p + "self_attn", t)
            norm(p + "norm1", t)
            attention(p + "cross_attn_token_to_image", t / 2)
            norm(p + "norm2", t)
            linear(p + "mlp.lin1", decoderMLPWidth, t)
            linear(p + "mlp.lin2", t, decoderMLPWidth)
            norm(p + "norm3", t)
            norm(p + "norm4", t)
            attention(p + "cross_attn_image_to_token", t / 2)
        }
        attention("mask_decoder.transformer.final_attn_token_to_image", t / 2)
        norm("mask_decoder.transformer.norm_final_attn", t)
        add("mask_decoder.output_upscaling.0.weight", [t, t / 4, 2, 2])
        add("mask_decoder.output_upscaling.0.bias", [t / 4])
        norm("mask_decoder.output_upscaling.1", t / 4)
        add("mask_decoder.output_upscaling.3.weight", [t / 4, t / 8, 2, 2])
        add("mask_decoder.output_upscaling.3.bias", [t / 8])
        for i in 0...multimaskOutputs {
            let p = "mask_decoder.output_hypernetworks_mlps.\(i).layers."
            linear(p + "0", t, t)
            linear(p + "1", t, t)
            linear(p + "2", t / 8, t)
        }
        for layer in 0..<iouHeadDepth {
            let inputs = layer == 0 ? t : iouHeadWidth
            let outputs = layer == iouHeadDepth - 1 ? multimaskOutputs + 1 : iouHeadWidth
            linear("mask_decoder.iou_prediction_head.layers.\(layer)", outputs, inputs)
        }
        return out
    }
}

extension SamArchitecture {
    /// segment_anything's `build_sam.py` configurations (vit_b, vit_l, vit_h), e.g. to make a random-init model of
    /// a released size; nil for the other variants.
    public static func published(_ variant: Variant) -> SamArchitecture? {
        let (width, depth, heads, global): (Int, Int, Int, [Int])
        switch variant {
        case .vitB: (width, depth, heads, global) = (768, 12, 12, [2, 5, 8, 11])
        case .vitL: (width, depth, heads, global) = (1024, 24, 16, [5, 11, 17, 23])
        case .vitH: (width, depth, heads, global) = (1280, 32, 16, [7, 15, 23, 31])
        case .mobileSAM, .custom: return nil
        }
        return SamArchitecture(
            variant: variant, encoderWidth: width, encoderDepth: depth, encoderHeads: heads,
            globalAttentionBlocks: global,
            windowSize: 14, patchSize: 16, gridSize: 64, mlpWidth: 4 * width, promptWidth: 256, maskInputChannels: 16,
            decoderMLPWidth: 2048, decoderDepth: 2, multimaskOutputs: 3, iouHeadDepth: 3, iouHeadWidth: 256)
    }

    private init(
        variant: Variant, encoderWidth: Int, encoderDepth: Int, encoderHeads: Int, globalAttentionBlocks: [Int],
        windowSize: Int,
        patchSize: Int, gridSize: Int, mlpWidth: Int, promptWidth: Int, maskInputChannels: Int, decoderMLPWidth: Int,
        decoderDepth: Int, multimaskOutputs: Int, iouHeadDepth: Int, iouHeadWidth: Int
    ) {
        (self.variant, self.encoderWidth, self.encoderDepth, self.encoderHeads) = (
            variant, encoderWidth, encoderDepth, encoderHeads
        )
        (self.globalAttentionBlocks, self.windowSize, self.patchSize, self.gridSize) = (
            globalAttentionBlocks, windowSize, patchSize, gridSize
        )
        (self.mlpWidth, self.promptWidth, self.maskInputChannels, self.decoderMLPWidth) = (
            mlpWidth, promptWidth, maskInputChannels, decoderMLPWidth
        )
        (self.decoderDepth, self.multimaskOutputs, self.iouHeadDepth, self.iouHeadWidth) = (
            decoderDepth, multimaskOutputs, iouHeadDepth, iouHeadWidth
        )
    }

    /// Leaf modules of Ultralytics' SAMModel for this architecture (its "layers" in `model.info()`): ViT blocks
    /// have 7 (two LayerNorms, qkv, proj, two MLP Linears, GELU), the encoder 5 more (patch embedding, neck);
    /// the prompt encoder 14; the mask decoder 19 per two-way layer, 5 for the final attention and its norm, 2
    /// token embeddings, 5 upscaling modules and, per MLP, its Linears plus its ReLU and output Identity.
    /// MobileSAM's TinyViT encoder has 162 (its one released configuration).
    public var ultralyticsLayerCount: Int {
        let encoder = variant == .mobileSAM ? 162 : 7 * encoderDepth + 5
        let decoder = 2 + (19 * decoderDepth + 5) + 5 + (multimaskOutputs + 1) * (3 + 2) + (iouHeadDepth + 2)
        return encoder + 14 + decoder
    }

    /// GFLOPs (2 × multiply-adds) of the ViT image encoder for one image at its input size: patch embedding,
    /// per block the qkv/proj products over the window-padded tokens and the MLP over the grid, attention scores and values, the
    /// decomposed relative-position terms, and the neck. Ultralytics reports no GFLOPs for SAM (its profiler
    /// fails on SAM's inputs), so this is our count.
    public var encoderGFLOPs: Double {
        guard variant != .mobileSAM else { return 0 }
        let (d, g, hd) = (Double(encoderWidth), Double(gridSize), Double(encoderWidth / max(1, encoderHeads)))
        var macs = g * g * d * 3 * Double(patchSize * patchSize)
        for block in 0..<encoderDepth {
            let global = globalAttentionBlocks.contains(block)
            let side = global ? g : Double((gridSize + windowSize - 1) / windowSize * windowSize)
            let tokens = side * side
            let window = global ? g * g : Double(windowSize * windowSize)
            let windowSide = global ? g : Double(windowSize)
            // qkv and proj run on the window-padded tokens, the MLP after unpartitioning (image_encoder.py Block).
            macs += tokens * d * 3 * d + tokens * d * d + 2 * g * g * d * Double(mlpWidth)
            macs += 2 * tokens * window * d  // q·kᵀ and attention·v, all heads
            macs += 2 * tokens * windowSide * hd * Double(encoderHeads)  // rel-pos terms (einsum over h and w)
        }
        let e = Double(promptWidth)
        macs += g * g * (e * d + e * e * 9)
        return 2 * macs / 1e9
    }
}
