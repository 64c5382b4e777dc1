using Onnx;
using static LSVCR.Serving.Export.OnnxGraph;
using DataType = Onnx.TensorProto.Types.DataType;

namespace LSVCR.Serving.Export;

/// <summary>A weight as exported: row-major values and shape.</summary>
internal sealed record Weight(float[] Data, long[] Shape)
{
    public int Rows => (int)Shape[0];
    public int Cols => Shape.Length > 1 ? (int)Shape[1] : 1;

    /// <summary>The transpose of a 2-D weight ([out, in] Linear weights become [in, out] MatMul operands).</summary>
    public Weight T()
    {
        var t = new float[Data.Length];
        for (int r = 0; r < Rows; r++)
            for (int c = 0; c < Cols; c++) t[c * Rows + r] = Data[r * Cols + c];
        return new Weight(t, [Cols, Rows]);
    }
}

/// <summary>The shape facts the graph needs from the checkpoint's config.</summary>
internal sealed record EncoderShape(int Hidden, int Heads, int EncoderLayers, int MixLayers, float LayerNormEps, float Temperature, bool StandardStacking);

/// <summary>
/// The eval-mode forward of RecCom's user encoders (MODEL.md §2.3 steps 3–7, no dropout) as an ONNX graph, built from
/// the checkpoint's weights. Per-video inputs that do not depend on the user (step 1's text vectors with the id
/// embedding already added, and the CommRank query) are precomputed by the export into [V, d] tables held as
/// initializers; comment texts enter through the bundle's [C, d] comment vectors × norms (graph inputs, shared with
/// the candidate table so they are held once).
/// <para>Inputs: <c>video_history</c> [B, Lp], <c>entry_videos</c> [B, Lc] (int64, 0 = pad; histories left-aligned,
/// Lp, Lc ≥ 1), the entries' comments as a flat bag: <c>comment_ids</c> [N] and <c>comment_slots</c> [N] (int64, the
/// entry b·Lc + j each comment belongs to; N ≥ 1, a lone pad id 0 when the batch has no comments; any number of
/// comments per entry), <c>comment_table</c> [C, d], <c>comment_scale</c> [C, 1]; CommRank also
/// <c>video</c> [B]; Outputs: <c>user</c> [B, d] (normalised); Rec also
/// <c>scores</c> [B, V] = user · video_vectorsᵀ / T (the full-catalogue product in the same call; the vectors are an initializer).</para>
/// </summary>
internal sealed class UserEncoderGraph
{
    private readonly OnnxGraph _g;
    private readonly Func<string, Weight> _w;
    private readonly EncoderShape _s;
    private readonly string _hidden; // 1e6, the additive mask magnitude

    private UserEncoderGraph(string name, Func<string, Weight> weights, EncoderShape shape)
    {
        _g = new OnnxGraph(name);
        _w = weights;
        _s = shape;
        _hidden = _g.Scalar(1e6f);
    }

    /// <param name="weights">state_dict entries by reference name.</param>
    /// <param name="historyTable">[V, d]: gate·id + pc_merge([adapt(title); adapt(first comment)]) per video.</param>
    /// <param name="entryTitleTable">[V, d]: gate·id + title half of pc_merge + its bias per video.</param>
    /// <param name="queryTable">CommRank only: [V, d] gate·id + adapt(title) (the un-normalised query).</param>
    /// <param name="videoVectors">Rec only: [V, d] normalised candidate vectors, an initializer so ONNX Runtime packs
    /// them for the GEMM once at load instead of on every call.</param>
    public static ModelProto Build(bool rec, Func<string, Weight> weights, EncoderShape shape, Weight historyTable, Weight entryTitleTable, Weight? queryTable, Weight? videoVectors)
    {
        var e = new UserEncoderGraph(rec ? "lsvcr_rec_user_encoder" : "lsvcr_commrank_user_encoder", weights, shape);
        return e.Emit(rec, historyTable, entryTitleTable, queryTable, videoVectors);
    }

    private string Init(string name) { var w = _w(name); return _g.Float(name, w.Data, w.Shape); }
    private string InitT(string name) { var w = _w(name).T(); return _g.Float(name + ".T", w.Data, w.Shape); }

    private ModelProto Emit(bool rec, Weight historyTable, Weight entryTitleTable, Weight? queryTable, Weight? videoVectorTable)
    {
        var g = _g;
        var d = _s.Hidden;
        var videoHistory = g.Input("video_history", DataType.Int64, "batch", "video_len");
        var entryVideos = g.Input("entry_videos", DataType.Int64, "batch", "entry_len");
        var commentIds = g.Input("comment_ids", DataType.Int64, "comments_in_batch");
        var commentSlots = g.Input("comment_slots", DataType.Int64, "comments_in_batch");
        var commentTable = g.Input("comment_table", DataType.Float, "comments", d.ToString());
        var commentScale = g.Input("comment_scale", DataType.Float, "comments", "1");
        var video = rec ? null : g.Input("video", DataType.Int64, "batch");

        var history = g.Float("history_table", historyTable.Data, historyTable.Shape);
        var entryTitles = g.Float("entry_title_table", entryTitleTable.Data, entryTitleTable.Shape);

        // Step 3, video history: table row + position, photo_layernorm.
        var xp = g.Op("Gather", history, videoHistory);
        var inP = LayerNorm(g.Op("Add", xp, Positions("pposition_embedding.weight", videoHistory)), "photo_layernorm");

        // Step 1 + 3, comment history: title part + pc_merge's comment half of the mean of ALL the entry's comment
        // vectors (MODEL.md: mean-mode comment bags, no cap). The comments come flat, each with its entry's slot
        // (row-major b·Lc + j); ScatterND with reduction "add" sums rows and counts per slot in one pass each, in list
        // order as CommentBags.Mean does. Pad id 0 is excluded from sum and count; a slot with no comments gives 0.
        var present = g.Node("Cast", [g.Op("Greater", commentIds, g.Ints(0))], null, Int("to", (long)DataType.Float));
        var presentCol = g.Op("Unsqueeze", present, g.Ints(-1));                                      // [N, 1]
        var rows = g.Op("Mul", g.Op("Gather", commentTable, commentIds), g.Op("Mul", g.Op("Gather", commentScale, commentIds), presentCol)); // [N, d]
        var slotIndex = g.Op("Unsqueeze", commentSlots, g.Ints(-1));                                  // [N, 1]
        var slotCount = g.Op("Reshape", g.Op("Size", entryVideos), g.Ints(1));                        // [1] = B·Lc
        string Zeros(long cols) => g.Node("ConstantOfShape", [g.Node("Concat", [slotCount, g.Ints(cols)], null, Int("axis", 0))], null, Tensor("value", ZeroFloat()));
        var sum = g.Node("ScatterND", [Zeros(d), slotIndex, rows], null, Str("reduction", "add"));    // [B·Lc, d]
        var count = g.Node("ScatterND", [Zeros(1), slotIndex, presentCol], null, Str("reduction", "add")); // [B·Lc, 1]
        var flatMean = g.Op("Div", sum, g.Op("Max", count, g.Scalar(1f)));
        var mean = g.Op("Reshape", flatMean, g.Node("Concat", [g.Op("Shape", entryVideos), g.Ints(d)], null, Int("axis", 0))); // [B, Lc, d]
        var pcMerge = _w("pc_merge.weight"); // [d, 2d]: [W_title | W_comment]
        var commentHalf = new float[d * d];
        for (int r = 0; r < d; r++) Array.Copy(pcMerge.Data, r * 2 * d + d, commentHalf, r * d, d);
        var commentHalfT = new Weight(commentHalf, [d, d]).T();
        var xc = g.Op("Add", g.Op("Gather", entryTitles, entryVideos), g.Op("MatMul", mean, g.Float("pc_merge.comment_half.T", commentHalfT.Data, commentHalfT.Shape)));
        var inC = LayerNorm(g.Op("Add", xc, Positions("cposition_embedding.weight", entryVideos)), "comment_layernorm");

        // Step 4: encoders with causal masks; step 5: mixing from the un-mixed outputs; step 6–7: the task's head.
        var hp = Stack("phis_encoder", _s.EncoderLayers, inP, inP, CausalMask(videoHistory));
        var hc = Stack("chis_encoder", _s.EncoderLayers, inC, inC, CausalMask(entryVideos));
        string user;
        if (rec)
        {
            var mp = Stack("phis_mix_layer", _s.MixLayers, hp, hc, BidirectionalMask(entryVideos));
            var hpFinal = Linear(g.Node("Concat", [hp, mp], null, Int("axis", -1)), "p_linear");
            user = AdditiveAttention(hpFinal, g.Op("Squeeze", BidirectionalMask(videoHistory), g.Ints(1, 2)));
        }
        else
        {
            var mc = Stack("chis_mix_layer", _s.MixLayers, hc, hp, BidirectionalMask(videoHistory));
            var hcFinal = Linear(g.Node("Concat", [hc, mc], null, Int("axis", -1)), "c_linear");
            var q = g.Op("Unsqueeze", g.Op("Gather", g.Float("query_table", queryTable!.Data, queryTable.Shape), video!), g.Ints(1));
            user = g.Op("Squeeze", Attention("comm_rank_att", q, hcFinal, BidirectionalMask(entryVideos)), g.Ints(1));
        }
        // F.normalize: x / max(‖x‖, 1e-12).
        var norm = g.Op("Sqrt", g.Node("ReduceSum", [g.Op("Mul", user, user), g.Ints(-1)], null, Int("keepdims", 1)));
        var normalised = g.Op("Div", user, g.Op("Max", norm, g.Scalar(1e-12f)));
        g.Output(normalised, "user", DataType.Float, "batch", d.ToString());
        if (rec)
        {
            var videoVectors = g.Float("video_vectors", videoVectorTable!.Data, videoVectorTable.Shape);
            var scores = g.Node("Gemm", [normalised, videoVectors], null, Int("transB", 1), Real("alpha", 1f / _s.Temperature));
            g.Output(scores, "scores", DataType.Float, "batch", "videos");
        }
        return g.ToModel(rec
            ? "LSVCR Rec user encoder (RecCom eval forward) with full-catalogue scores."
            : "LSVCR CommRank user encoder (RecCom eval forward).");
    }

    /// <summary>Rows 0..L−1 of a position table, L = the history's length.</summary>
    private string Positions(string table, string ids)
    {
        var length = _g.Node("Shape", [ids], null, Int("start", 1), Int("end", 2));
        return _g.Op("Slice", Init(table), _g.Ints(0), length, _g.Ints(0));
    }

    private string LayerNorm(string x, string prefix) =>
        _g.Node("LayerNormalization", [x, Init(prefix + ".weight"), Init(prefix + ".bias")], null, Int("axis", -1), Real("epsilon", _s.LayerNormEps));

    private string Linear(string x, string prefix) => _g.Op("Add", _g.Op("MatMul", x, InitT(prefix + ".weight")), Init(prefix + ".bias"));

    private string Gelu(string x) =>
        _g.Op("Mul", _g.Op("Mul", x, _g.Scalar(0.5f)), _g.Op("Add", _g.Scalar(1f), _g.Op("Erf", _g.Op("Mul", x, _g.Scalar(MathF.Sqrt(0.5f))))));

    /// <summary>0 where the id is not pad, −1e6 where it is: [B, L] floats.</summary>
    private string Visible(string ids) =>
        _g.Node("Cast", [_g.Op("Greater", ids, _g.Ints(0))], null, Int("to", (long)DataType.Float));

    private string ToAdditive(string visible) => _g.Op("Mul", _g.Op("Sub", visible, _g.Scalar(1f)), _hidden);

    /// <summary>[B, 1, 1, L]: key j visible iff not pad.</summary>
    private string BidirectionalMask(string ids) => ToAdditive(_g.Op("Unsqueeze", Visible(ids), _g.Ints(1, 2)));

    /// <summary>[B, 1, L, L]: key j visible to query i iff j ≤ i and j not pad.</summary>
    private string CausalMask(string ids)
    {
        var length = _g.Node("Shape", [ids], null, Int("start", 1), Int("end", 2));
        var square = _g.Node("ConstantOfShape", [_g.Node("Concat", [length, length], null, Int("axis", 0))], null,
            Tensor("value", OneFloat()));
        var lower = _g.Node("Trilu", [square], null, Int("upper", 0));
        return ToAdditive(_g.Op("Mul", _g.Op("Unsqueeze", Visible(ids), _g.Ints(1, 2)), lower));
    }

    private static TensorProto OneFloat() => FloatConstant(1f);
    private static TensorProto ZeroFloat() => FloatConstant(0f);

    private static TensorProto FloatConstant(float value)
    {
        var t = new TensorProto { DataType = (int)DataType.Float };
        t.Dims.Add(1);
        t.FloatData.Add(value);
        return t;
    }

    /// <summary>Every layer reads keys/values from the stack's original kv (reference); standard stacking lets a
    /// self-attending stack read the previous layer's output.</summary>
    private string Stack(string prefix, int layers, string h, string kv, string mask)
    {
        var self = h == kv;
        var current = h;
        for (int i = 0; i < layers; i++)
        {
            var layer = $"{prefix}.layer.{i}";
            var a = Attention($"{layer}.multi_head_attention", current, _s.StandardStacking && self ? current : kv, mask);
            current = FeedForward($"{layer}.feed_forward", a);
        }
        return current;
    }

    /// <summary>LayerNorm(out_linear(softmax(QKᵀ/√dh + mask)·V) + q).</summary>
    private string Attention(string prefix, string q, string kv, string mask)
    {
        var g = _g;
        var (h, dh) = (_s.Heads, _s.Hidden / _s.Heads);
        var split = g.Ints(0, 0, h, dh);
        string Heads(string x, string name, long[] perm) =>
            g.Node("Transpose", [g.Op("Reshape", Linear(x, $"{prefix}.{name}"), split)], null, IntList("perm", perm));
        var qh = Heads(q, "query", [0, 2, 1, 3]);   // [B, h, Lq, dh]
        var kt = Heads(kv, "key", [0, 2, 3, 1]);    // [B, h, dh, Lk]
        var vh = Heads(kv, "value", [0, 2, 1, 3]);  // [B, h, Lk, dh]
        var scores = g.Op("Add", g.Op("Mul", g.Op("MatMul", qh, kt), g.Scalar(1f / MathF.Sqrt(dh))), mask);
        var ctx = g.Op("MatMul", g.Node("Softmax", [scores], null, Int("axis", -1)), vh);
        var merged = g.Op("Reshape", g.Node("Transpose", [ctx], null, IntList("perm", 0, 2, 1, 3)), g.Ints(0, 0, _s.Hidden));
        return LayerNorm(g.Op("Add", Linear(merged, $"{prefix}.out_linear"), q), $"{prefix}.LayerNorm");
    }

    private string FeedForward(string prefix, string x)
    {
        var y = Linear(Gelu(Linear(x, $"{prefix}.linear_1")), $"{prefix}.linear_2");
        return LayerNorm(_g.Op("Add", y, x), $"{prefix}.LayerNorm");
    }

    /// <summary>rec_att: softmax over positions of Linear(GELU(LayerNorm(Linear(h)))) + mask, then Σ weight·h.</summary>
    private string AdditiveAttention(string h, string mask)
    {
        var g = _g;
        var a = Linear(Gelu(LayerNorm(Linear(h, "rec_att.attn.0"), "rec_att.attn.2")), "rec_att.attn.4"); // [B, L, 1]
        var weights = g.Node("Softmax", [g.Op("Add", g.Op("Squeeze", a, g.Ints(-1)), mask)], null, Int("axis", -1));
        return g.Op("Squeeze", g.Op("MatMul", g.Op("Unsqueeze", weights, g.Ints(1)), h), g.Ints(1));
    }
}
