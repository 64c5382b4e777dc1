using System.Text;

namespace LSVCR.Embeddings.Tests;

/// <summary>
/// Writes a minimal ONNX text encoder by hand (protobuf wire format, field numbers from onnx.proto) so tests need no
/// download: <c>last_hidden_state = Gather(table, input_ids)</c>, i.e. each token's hidden state is its table row.
/// Mean pooling + L2 normalisation of such a model is easy to compute by hand.
/// </summary>
public static class TinyOnnx
{
    /// <summary>Token vocabulary of the tiny model, id = line number.</summary>
    public static readonly string[] Vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cat", "dog", "hello", "##s", "中", "国"];

    /// <summary>Hidden states (3-d) per token id: simple values so expected vectors are hand-computable.</summary>
    public static readonly float[][] Table =
    [
        [0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 0],
        [0, 0, 4], [0, 4, 0], [2, 0, 0], [0, 0, 2], [3, 0, 0], [0, 0, 3],
    ];

    /// <summary>Writes model.onnx and vocab.txt into <paramref name="dir"/>; returns the model path.</summary>
    public static string Write(string dir, bool withAttentionMask = true, int vocabRows = -1)
    {
        var rows = vocabRows < 0 ? Table.Length : vocabRows;
        File.WriteAllLines(Path.Combine(dir, "vocab.txt"), Vocab);
        var path = Path.Combine(dir, "model.onnx");
        File.WriteAllBytes(path, Model(rows, withAttentionMask));
        return path;
    }

    /// <summary>A HuggingFace tokenizer.json (BERT normaliser, WordPiece model) over <see cref="Vocab"/>.</summary>
    public static string TokenizerJson(bool lowercase)
    {
        var special = new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" };
        var json = new System.Text.Json.Nodes.JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new System.Text.Json.Nodes.JsonArray(special.Select(t => (System.Text.Json.Nodes.JsonNode)new System.Text.Json.Nodes.JsonObject
            {
                ["id"] = Array.IndexOf(Vocab, t), ["special"] = true, ["content"] = t, ["single_word"] = false,
                ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false,
            }).ToArray()),
            ["normalizer"] = new System.Text.Json.Nodes.JsonObject
            {
                ["type"] = "BertNormalizer", ["clean_text"] = true, ["handle_chinese_chars"] = true, ["strip_accents"] = null, ["lowercase"] = lowercase,
            },
            ["pre_tokenizer"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "BertPreTokenizer" },
            ["post_processor"] = System.Text.Json.Nodes.JsonNode.Parse("""
                {"type": "TemplateProcessing",
                 "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                 "pair": [],
                 "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}}
                """),
            ["decoder"] = System.Text.Json.Nodes.JsonNode.Parse("""{"type": "WordPiece", "prefix": "##", "cleanup": true}"""),
            ["model"] = new System.Text.Json.Nodes.JsonObject
            {
                ["type"] = "WordPiece", ["unk_token"] = "[UNK]", ["continuing_subword_prefix"] = "##", ["max_input_chars_per_word"] = 100,
                ["vocab"] = new System.Text.Json.Nodes.JsonObject(Vocab.Select((t, i) => KeyValuePair.Create(t, (System.Text.Json.Nodes.JsonNode?)i))),
            },
        };
        return json.ToJsonString();
    }

    public static byte[] Model(int rows, bool withAttentionMask)
    {
        var table = new Proto();
        table.Int(1, rows).Int(1, 3).Int(2, 1 /* FLOAT */).Str(8, "table");
        var raw = new byte[rows * 3 * 4];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < 3; c++)
                BitConverter.TryWriteBytes(raw.AsSpan((r * 3 + c) * 4), Table[r][c]);
        table.Bytes(9, raw);

        var node = new Proto().Str(1, "table").Str(1, "input_ids").Str(2, "last_hidden_state").Str(3, "lookup").Str(4, "Gather");
        var graph = new Proto().Msg(1, node).Str(2, "tiny").Msg(5, table).Msg(11, Input("input_ids", 7 /* INT64 */, "batch", "seq"));
        if (withAttentionMask) graph.Msg(11, Input("attention_mask", 7, "batch", "seq"));
        graph.Msg(12, Input("last_hidden_state", 1, "batch", "seq", 3));
        return new Proto().Int(1, 8 /* IR version */).Str(2, "lsvcr-tests").Msg(7, graph).Msg(8, new Proto().Str(1, "").Int(2, 13)).ToArray();
    }

    private static Proto Input(string name, int elemType, params object[] dims)
    {
        var shape = new Proto();
        foreach (var d in dims)
            shape.Msg(1, d is string p ? new Proto().Str(2, p) : new Proto().Int(1, (int)d));
        var tensor = new Proto().Int(1, elemType).Msg(2, shape);
        return new Proto().Str(1, name).Msg(2, new Proto().Msg(1, tensor));
    }

    /// <summary>The protobuf wire format: varints (type 0) and length-delimited fields (type 2).</summary>
    private sealed class Proto
    {
        private readonly MemoryStream _bytes = new();

        public Proto Int(int field, long value)
        {
            Varint((ulong)(field << 3));
            Varint((ulong)value);
            return this;
        }

        public Proto Str(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

        public Proto Msg(int field, Proto message) => Bytes(field, message.ToArray());

        public Proto Bytes(int field, byte[] value)
        {
            Varint((ulong)(field << 3 | 2));
            Varint((ulong)value.Length);
            _bytes.Write(value);
            return this;
        }

        public byte[] ToArray() => _bytes.ToArray();

        private void Varint(ulong v)
        {
            while (v >= 0x80)
            {
                _bytes.WriteByte((byte)(v | 0x80));
                v >>= 7;
            }
            _bytes.WriteByte((byte)v);
        }
    }
}
