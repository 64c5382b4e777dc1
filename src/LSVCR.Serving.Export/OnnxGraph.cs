using Google.Protobuf;
using Onnx;

namespace LSVCR.Serving.Export;

/// <summary>
/// A small writer of ONNX graphs over OnnxSharp's protobuf types: nodes get generated output names, weights become
/// initializers. OnnxSharp reads and writes the format but has no graph-building helpers, hence this one.
/// </summary>
internal sealed class OnnxGraph
{
    /// <summary>Opset 17: the first with LayerNormalization; ONNX Runtime 1.31 runs it on every provider.</summary>
    public const int Opset = 17;

    private readonly GraphProto _graph;
    private int _next;

    public OnnxGraph(string name) => _graph = new GraphProto { Name = name };

    public string Input(string name, TensorProto.Types.DataType type, params string[] dims)
    {
        _graph.Input.Add(Value(name, type, dims));
        return name;
    }

    public void Output(string value, string name, TensorProto.Types.DataType type, params string[] dims)
    {
        Node("Identity", [value], name);
        _graph.Output.Add(Value(name, type, dims));
    }

    private static ValueInfoProto Value(string name, TensorProto.Types.DataType type, string[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
            shape.Dim.Add(long.TryParse(d, out var v) ? new TensorShapeProto.Types.Dimension { DimValue = v } : new TensorShapeProto.Types.Dimension { DimParam = d });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }

    public string Float(string name, float[] data, params long[] dims)
    {
        if (data.Length != dims.Aggregate(1L, (a, b) => a * b))
            throw new ArgumentException($"initializer {name}: {data.Length} values for shape [{string.Join(", ", dims)}]");
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        t.Dims.AddRange(dims);
        t.RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan()));
        _graph.Initializer.Add(t);
        return name;
    }

    public string Scalar(float value) => Float($"c{_next++}", [value]);

    public string Ints(params long[] values)
    {
        var t = new TensorProto { Name = $"i{_next++}", DataType = (int)TensorProto.Types.DataType.Int64 };
        t.Dims.Add(values.Length);
        t.Int64Data.AddRange(values);
        _graph.Initializer.Add(t);
        return t.Name;
    }

    /// <summary>Adds a node; returns its (first) output name.</summary>
    public string Node(string op, string[] inputs, string? output = null, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = $"{op}_{_next}" };
        node.Input.AddRange(inputs);
        node.Output.Add(output ?? $"{op.ToLowerInvariant()}_{_next}");
        _next++;
        node.Attribute.AddRange(attributes);
        _graph.Node.Add(node);
        return node.Output[0];
    }

    public string Op(string op, params string[] inputs) => Node(op, inputs);

    public static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };
    public static AttributeProto Real(string name, float value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };
    public static AttributeProto Str(string name, string value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };
    public static AttributeProto IntList(string name, params long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }
    public static AttributeProto Tensor(string name, TensorProto value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Tensor, T = value };

    public ModelProto ToModel(string doc)
    {
        var model = new ModelProto
        {
            IrVersion = 8, ProducerName = "lsvcr export", ProducerVersion = typeof(OnnxGraph).Assembly.GetName().Version?.ToString() ?? "0",
            DocString = doc, Graph = _graph,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        return model;
    }
}
