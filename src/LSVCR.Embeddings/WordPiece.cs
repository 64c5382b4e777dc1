using System.Text.Json;
using FastBertTokenizer;
using LSVCR.Data;

namespace LSVCR.Embeddings;

/// <summary>
/// WordPiece tokenisation through FastBertTokenizer (HF-compatible BERT normalisation, CJK splitting, accent
/// stripping), loaded from a vocab.txt or a tokenizer.json, truncating to the model's token limit.
/// Safe to call from several workers at once: FastBertTokenizer's own batch API encodes on one instance in parallel.
/// </summary>
internal sealed class WordPiece
{
    private readonly BertTokenizer _tokenizer;

    private WordPiece(BertTokenizer tokenizer, int maxTokens, string source)
    {
        _tokenizer = tokenizer;
        MaxTokens = maxTokens;
        Source = source;
    }

    public int MaxTokens { get; }
    public string Source { get; }

    /// <summary>Tokens of <paramref name="text"/> including [CLS] and [SEP], after truncation; the spans hold at least <see cref="MaxTokens"/>.</summary>
    public int Count(string text, Span<long> ids, Span<long> mask)
    {
        ids = ids[..MaxTokens];
        mask = mask[..MaxTokens];
        _tokenizer.Encode(text, ids, mask, MaxTokens);
        int n = mask.IndexOf(0L);
        return n < 0 ? MaxTokens : n;
    }

    /// <summary>Writes the tokens padded to <c>ids.Length</c> (which must be at least the text's token count).</summary>
    public void Encode(string text, Span<long> ids, Span<long> mask) => _tokenizer.Encode(text, ids, mask, ids.Length);

    public static WordPiece FromVocab(TextReader vocab, bool lowercase, int maxTokens, string source)
    {
        var tokenizer = new BertTokenizer();
        try
        {
            tokenizer.LoadVocabulary(vocab, lowercase);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new LsvcrException($"{source}: not a usable WordPiece vocabulary ({e.Message})", e);
        }
        return Checked(new WordPiece(tokenizer, maxTokens, source));
    }

    /// <summary>
    /// Resolves <paramref name="path"/> (a tokenizer.json, a vocab.txt, or a folder with either) and the token limit:
    /// <paramref name="maxTokens"/> when positive, else tokenizer_config.json's model_max_length or
    /// sentence_bert_config.json's max_seq_length beside it, else 512 (BERT's position table).
    /// </summary>
    public static WordPiece Load(string path, int maxTokens)
    {
        string file = path;
        if (Directory.Exists(path))
        {
            file = new[] { "tokenizer.json", "vocab.txt" }.Select(n => Path.Combine(path, n)).FirstOrDefault(File.Exists)
                   ?? throw new LsvcrException($"{path}: no tokenizer.json or vocab.txt in this folder");
        }
        else if (!File.Exists(path))
        {
            throw new LsvcrException($"{path}: tokenizer file not found");
        }
        var dir = Path.GetDirectoryName(Path.GetFullPath(file))!;
        int limit = maxTokens > 0 ? maxTokens : ModelLimit(dir) ?? 512;
        if (file.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            var tokenizer = new BertTokenizer();
            try
            {
                using var stream = File.OpenRead(file);
                tokenizer.LoadTokenizerJson(stream);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                throw new LsvcrException($"{file}: not a usable BERT/WordPiece tokenizer.json ({e.Message})", e);
            }
            return Checked(new WordPiece(tokenizer, limit, file));
        }
        using var reader = File.OpenText(file);
        return FromVocab(reader, LowercaseFromConfig(dir) ?? true, limit, file);
    }

    /// <summary>A vocabulary without the BERT special tokens would encode every text the same; catch it here.</summary>
    private static WordPiece Checked(WordPiece wp)
    {
        var ids = new long[wp.MaxTokens];
        var mask = new long[wp.MaxTokens];
        int n;
        try { n = wp.Count("a b", ids, mask); }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new LsvcrException($"{wp.Source}: the tokenizer fails on plain text ({e.Message})", e);
        }
        if (n < 2) throw new LsvcrException($"{wp.Source}: the tokenizer produced no [CLS]/[SEP] tokens");
        return wp;
    }

    private static int? ModelLimit(string dir)
    {
        var st = ReadInt(Path.Combine(dir, "sentence_bert_config.json"), "max_seq_length");
        if (st is > 1) return st;
        var hf = ReadInt(Path.Combine(dir, "tokenizer_config.json"), "model_max_length");
        // HF writes a huge sentinel (1e30) when the model sets no limit.
        return hf is > 1 and <= 1 << 16 ? hf : null;
    }

    private static bool? LowercaseFromConfig(string dir)
    {
        var file = Path.Combine(dir, "tokenizer_config.json");
        if (!File.Exists(file)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(file));
            return doc.RootElement.TryGetProperty("do_lower_case", out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False
                ? v.GetBoolean() : null;
        }
        catch (JsonException e) { throw new LsvcrException($"{file}: invalid JSON ({e.Message})", e); }
    }

    private static int? ReadInt(string file, string property)
    {
        if (!File.Exists(file)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(file));
            if (!doc.RootElement.TryGetProperty(property, out var v) || v.ValueKind != JsonValueKind.Number) return null;
            return v.TryGetDouble(out var d) && d < int.MaxValue ? (int)d : null;
        }
        catch (JsonException e) { throw new LsvcrException($"{file}: invalid JSON ({e.Message})", e); }
    }
}
