using System.Text.RegularExpressions;
using Google.Protobuf;
using Onnx;
using static TorchSharp.torch;

namespace LSVCR.Alignment.MiniLm;

/// <summary>
/// Reads a BERT encoder's weights from an ONNX graph exported by Hugging Face / PyTorch (OnnxSharp parses the protobuf).
/// Embedding and LayerNorm tensors keep their PyTorch names; the exporter stores each Linear weight as an anonymous
/// MatMul operand [in, out] (the transpose of PyTorch's [out, in]), so a projection is identified by the named bias
/// its MatMul output is added to (<c>encoder.layer.0.attention.self.query.bias</c> → that layer's query weight).
/// </summary>
public static partial class OnnxBertWeights
{
    [GeneratedRegex(@"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")]
    private static partial Regex LayerParameter();

    private static readonly Dictionary<string, string> LayerNames = new()
    {
        ["attention.self.query"] = "query",
        ["attention.self.key"] = "key",
        ["attention.self.value"] = "value",
        ["attention.output.dense"] = "attention_output",
        ["attention.output.LayerNorm"] = "attention_norm",
        ["intermediate.dense"] = "intermediate",
        ["output.dense"] = "output",
        ["output.LayerNorm"] = "output_norm",
    };

    /// <summary>The encoder's shape and its weights under <see cref="BertEncoder"/>'s parameter names (CPU float32).</summary>
    public static (BertConfig Config, Dictionary<string, Tensor> Weights) Read(byte[] model, string source)
    {
        ModelProto proto;
        try { proto = ModelProto.Parser.ParseFrom(model); }
        catch (InvalidProtocolBufferException e) { throw new LsvcrException($"{source}: not an ONNX model ({e.Message})", e); }
        var graph = proto.Graph;
        var inits = graph.Initializer.ToDictionary(i => i.Name);
        var named = new Dictionary<string, TensorProto>();
        foreach (var init in graph.Initializer)
            if (init.Name.EndsWith(".weight") || init.Name.EndsWith(".bias")) named[init.Name] = init;

        // MatMul(x, W) → Add(bias, ·) (either operand order): W is the weight of the bias's Linear, transposed.
        var consumers = graph.Node.SelectMany(n => n.Input.Select(i => (i, n))).ToLookup(p => p.i, p => p.n);
        var transposed = new Dictionary<string, TensorProto>();
        foreach (var node in graph.Node.Where(n => n.OpType == "MatMul" && n.Input.Count == 2 && inits.ContainsKey(n.Input[1])))
        {
            var add = consumers[node.Output[0]].FirstOrDefault(n => n.OpType == "Add");
            var bias = add?.Input.FirstOrDefault(i => i.EndsWith(".bias") && named.ContainsKey(i));
            if (bias is null) continue;
            transposed[bias[..^".bias".Length] + ".weight"] = inits[node.Input[1]];
        }

        var weights = new Dictionary<string, Tensor>();
        foreach (var (name, init) in named.Concat(transposed.Select(kv => KeyValuePair.Create(kv.Key, kv.Value))))
        {
            if (name.StartsWith("pooler.")) continue; // sentence vectors mean-pool the hidden states; the pooler is unused
            string? ours = name.StartsWith("embeddings.") ? name : null;
            if (LayerParameter().Match(name) is { Success: true } m && LayerNames.TryGetValue(m.Groups[2].Value, out var part))
                ours = $"layer.{m.Groups[1].Value}.{part}.{m.Groups[3].Value}";
            if (ours is null) continue;
            var t = ToTensor(init, source);
            weights[ours] = transposed.ContainsKey(name) && ReferenceEquals(transposed[name], init) ? t.t().contiguous() : t;
        }

        var word = weights.GetValueOrDefault("embeddings.word_embeddings.weight")
                   ?? throw new LsvcrException($"{source}: no embeddings.word_embeddings.weight initializer; not a BERT encoder export");
        int layers = weights.Keys.Select(k => LayerParameter().Match("encoder." + k)).Count(m => m.Success && m.Groups[2].Value == "query" && m.Groups[3].Value == "weight");
        int hidden = (int)word.shape[1];
        var config = new BertConfig
        {
            VocabSize = (int)word.shape[0],
            Hidden = hidden,
            Layers = layers,
            Heads = Heads(graph, inits, hidden) ?? throw new LsvcrException($"{source}: cannot find the attention head count in the graph"),
            Intermediate = (int)weights["layer.0.intermediate.weight"].shape[0],
            MaxPositions = (int)weights["embeddings.position_embeddings.weight"].shape[0],
            TypeVocabSize = (int)weights["embeddings.token_type_embeddings.weight"].shape[0],
        };
        if (layers == 0) throw new LsvcrException($"{source}: no encoder layers found");
        return (config, weights);
    }

    /// <summary>The head count from the first per-head Reshape: its shape is Concat(batch, length, heads, head_dim).</summary>
    private static int? Heads(GraphProto graph, Dictionary<string, TensorProto> inits, int hidden)
    {
        foreach (var concat in graph.Node.Where(n => n.OpType == "Concat" && n.Input.Count == 4))
        {
            if (!inits.TryGetValue(concat.Input[2], out var h) || !inits.TryGetValue(concat.Input[3], out var d)) continue;
            long heads = Int64(h), dim = Int64(d);
            if (heads > 0 && dim > 0 && heads * dim == hidden) return (int)heads;
        }
        return null;
    }

    private static long Int64(TensorProto t) =>
        t.DataType == (int)TensorProto.Types.DataType.Int64
            ? t.RawData.Length >= 8 ? BitConverter.ToInt64(t.RawData.Span) : t.Int64Data.FirstOrDefault()
            : -1;

    private static Tensor ToTensor(TensorProto t, string source)
    {
        if (t.DataType != (int)TensorProto.Types.DataType.Float)
            throw new LsvcrException($"{source}: initializer {t.Name} is {(TensorProto.Types.DataType)t.DataType}, expected float32");
        float[] data = t.RawData.Length > 0
            ? System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray()
            : t.FloatData.ToArray();
        return tensor(data, t.Dims.ToArray());
    }
}
