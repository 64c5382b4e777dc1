using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace LSVCR.Alignment.Decoder;

/// <summary>
/// A Hugging Face tokenizer.json with a byte-level BPE model (Qwen2, Llama 3, GPT-2 style) as a Microsoft.ML.Tokenizers
/// <see cref="BpeTokenizer"/>. Microsoft.ML.Tokenizers 3.0 has no tokenizer.json reader (it builds BPE from
/// vocab/merges, SentencePiece from .model, Tiktoken from .tiktoken files), so this reads the file's vocab, merges,
/// added tokens and Split pre-tokenizer regex and hands them to <see cref="BpeOptions"/>.
/// </summary>
public sealed class BpeTokenizerJson : BackboneTokenizer
{
    /// <summary>GPT-2's pre-tokenizer pattern, what a ByteLevel pre-tokenizer with use_regex applies.</summary>
    private const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly BpeTokenizer _bpe;
    private readonly int[] _prefix;

    private BpeTokenizerJson(BpeTokenizer bpe, int pad, int? bos)
    {
        _bpe = bpe;
        PadId = pad;
        _prefix = bos is { } b ? [b] : [];
    }

    public Tokenizer Inner => _bpe;
    public override int[] Encode(string text) => _bpe.EncodeToIds(text).ToArray();
    public override int PadId { get; }
    public override IReadOnlyList<int> Prefix => _prefix;
    public override IReadOnlyList<int> Suffix => [];

    public static BpeTokenizerJson Load(string file, int? bos)
    {
        if (!File.Exists(file)) throw new LsvcrException($"{file}: tokenizer.json not found");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllText(file)); }
        catch (JsonException e) { throw new LsvcrException($"{file}: invalid JSON ({e.Message})", e); }
        using (doc)
        {
            var root = doc.RootElement;
            if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
                throw new LsvcrException($"{file}: no \"model\" object");
            var type = model.TryGetProperty("type", out var t) ? t.GetString() : null;
            if (type != "BPE") throw new LsvcrException($"{file}: model.type is '{type}', only byte-level BPE tokenizers are supported");
            if (!model.TryGetProperty("vocab", out var vocabJson) || vocabJson.ValueKind != JsonValueKind.Object)
                throw new LsvcrException($"{file}: model.vocab is missing");
            var vocab = vocabJson.EnumerateObject().Select(p => KeyValuePair.Create(p.Name, p.Value.GetInt32())).ToList();
            var merges = new List<string>();
            if (model.TryGetProperty("merges", out var mergesJson))
                foreach (var m in mergesJson.EnumerateArray())
                    merges.Add(m.ValueKind == JsonValueKind.Array ? $"{m[0].GetString()} {m[1].GetString()}" : m.GetString()!);

            var special = new Dictionary<string, int>();
            if (root.TryGetProperty("added_tokens", out var added))
                foreach (var a in added.EnumerateArray())
                    special[a.GetProperty("content").GetString()!] = a.GetProperty("id").GetInt32();

            var pre = root.TryGetProperty("pre_tokenizer", out var p) ? p : default;
            if (!IsByteLevel(pre)) throw new LsvcrException($"{file}: the pre_tokenizer is not ByteLevel; only byte-level BPE (Qwen2, Llama 3) is supported");
            var pattern = SplitPattern(pre) ?? Gpt2Pattern;
            var options = new BpeOptions(vocab)
            {
                Merges = merges,
                ByteLevel = true,
                SpecialTokens = special.Count > 0 ? special : null,
                PreTokenizer = new RegexPreTokenizer(new Regex(pattern, RegexOptions.Compiled), special.Count > 0 ? special : null),
            };
            BpeTokenizer bpe;
            try { bpe = BpeTokenizer.Create(options); }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                throw new LsvcrException($"{file}: not a usable BPE tokenizer ({e.Message})", e);
            }
            var pad = new[] { "<|endoftext|>", "<pad>", "<|finetune_right_pad_id|>" }.Select(s => special.TryGetValue(s, out var id) ? id : (int?)null)
                .FirstOrDefault(i => i is not null) ?? 0;
            return new BpeTokenizerJson(bpe, pad, bos);
        }
    }

    private static bool IsByteLevel(JsonElement pre) => pre.ValueKind == JsonValueKind.Object && (
        pre.TryGetProperty("type", out var t) && t.GetString() == "ByteLevel" ||
        pre.TryGetProperty("pretokenizers", out var list) && list.EnumerateArray().Any(IsByteLevel));

    /// <summary>The Regex of a Split pre-tokenizer in the (possibly nested) sequence, else null.</summary>
    private static string? SplitPattern(JsonElement pre)
    {
        if (pre.ValueKind != JsonValueKind.Object) return null;
        if (pre.TryGetProperty("type", out var t) && t.GetString() == "Split" && pre.TryGetProperty("pattern", out var pat) &&
            pat.TryGetProperty("Regex", out var regex))
            return regex.GetString();
        if (pre.TryGetProperty("pretokenizers", out var list))
            foreach (var item in list.EnumerateArray())
                if (SplitPattern(item) is { } found) return found;
        return null;
    }
}
