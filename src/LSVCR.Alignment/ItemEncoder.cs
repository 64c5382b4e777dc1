using static TorchSharp.torch;

namespace LSVCR.Alignment;

/// <summary>
/// Item texts through the LLM: each text framed as the backbone frames a sentence, truncated to the item token limit,
/// mean-pooled over its tokens (BERT: all of them, [CLS]/[SEP] included, as sentence-transformers; decoders: the text
/// tokens, not the BOS whose state is an attention sink), then <c>llm_emb_mlp</c> → E.
/// </summary>
public sealed class ItemEncoder(TextBackbone backbone, AlignmentHeads heads, Func<string, int[]> tokens, int itemTokens, Device device)
{
    /// <summary>[texts.Count, E]; with gradients when autograd is on.</summary>
    public Tensor Encode(IReadOnlyList<string> texts)
    {
        using var scope = NewDisposeScope();
        var tok = backbone.Tokenizer;
        int frame = tok.Prefix.Count + tok.Suffix.Count;
        var rows = texts.Select(t =>
        {
            var body = tokens(t);
            if (body.Length > itemTokens - frame) body = body[..Math.Max(1, itemTokens - frame)];
            return tok.Prefix.Concat(body).Concat(tok.Suffix).ToArray();
        }).ToArray();
        // Length-sorted chunks, each padded only to its own longest text: item texts vary in length, and padding
        // every one to the batch's longest would spend most of the encoder's work on pad tokens.
        var order = Enumerable.Range(0, rows.Length).OrderBy(i => rows[i].Length).ToArray();
        var parts = new List<Tensor>();
        for (int start = 0; start < order.Length; start += Chunk)
        {
            var chunk = order.Skip(start).Take(Chunk).Select(i => rows[i]).ToArray();
            parts.Add(PoolChunk(chunk));
        }
        var inverse = new long[order.Length];
        for (int s = 0; s < order.Length; s++) inverse[order[s]] = s;
        var pooled = cat(parts, 0).index_select(0, tensor(inverse).to(device));
        return heads.ItemEmbedding(pooled.to(ScalarType.Float32)).MoveToOuterDisposeScope();
    }

    /// <summary>Texts per encoder call.</summary>
    public const int Chunk = 64;

    /// <summary>(rows, width) of every encoder call, for FLOP counting ; null = not recorded.</summary>
    public List<(int Rows, int Width)>? Shapes { get; set; }

    private Tensor PoolChunk(int[][] rows)
    {
        var tok = backbone.Tokenizer;
        int width = rows.Max(r => r.Length);
        Shapes?.Add((rows.Length, width));
        var ids = new long[rows.Length * width];
        var mask = new long[rows.Length * width];
        var pool = new float[rows.Length * width];
        int skip = backbone.IsCausal ? tok.Prefix.Count : 0;
        for (int i = 0; i < rows.Length; i++)
        {
            Array.Fill(ids, tok.PadId, i * width, width);
            for (int j = 0; j < rows[i].Length; j++)
            {
                ids[i * width + j] = rows[i][j];
                mask[i * width + j] = 1;
                if (j >= skip) pool[i * width + j] = 1;
            }
        }
        var hidden = backbone.forward(tensor(ids, rows.Length, width).to(device), tensor(mask, rows.Length, width).to(device));
        var weights = tensor(pool, rows.Length, width, 1).to(hidden.dtype, device);
        return hidden.mul(weights).sum(1).div(weights.sum(1).clamp_min(1));
    }
}
