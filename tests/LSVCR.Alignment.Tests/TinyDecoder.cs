using System.Text.Json;
using LSVCR.Alignment.Decoder;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace LSVCR.Alignment.Tests;

/// <summary>Writes a tiny Hugging Face-style decoder folder (config.json, model.safetensors, tokenizer.json).</summary>
internal static class TinyDecoder
{
    /// <summary>Byte-level BPE over h e l o w r d and space ("Ġ"): "hello world" → [12, 13, 4, 7, 3, 8].</summary>
    public static readonly Dictionary<string, int> Vocab = new()
    {
        ["<|endoftext|>"] = 0, ["h"] = 1, ["e"] = 2, ["l"] = 3, ["o"] = 4, ["Ġ"] = 5, ["w"] = 6, ["r"] = 7, ["d"] = 8,
        ["he"] = 9, ["ll"] = 10, ["hell"] = 11, ["hello"] = 12, ["Ġw"] = 13,
    };

    public static DecoderConfig Config(string type = "qwen2", bool tied = true) => new()
    {
        ModelType = type, VocabSize = 16, Hidden = 16, Intermediate = 24, Layers = 2, Heads = 4, KeyValueHeads = 2,
        RmsNormEps = 1e-6, RopeTheta = 10000, MaxPositions = 64, TieWordEmbeddings = tied,
    };

    public static string Write(DecoderConfig config, int seed = 5, string? dir = null, double std = 0.02)
    {
        dir ??= Path.Combine(Path.GetTempPath(), "lsvcr-tinydec-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(config));
        manual_seed(seed);
        using var model = new DecoderLm(config, new CharTokenizer());
        if (std != 0.02)
            using (no_grad())
                foreach (var (name, p) in model.named_parameters())
                    if (!name.EndsWith("norm.weight")) p.mul_(std / 0.02);
        // HF layout: "model." prefix, lm_head.weight only when untied.
        var state = model.state_dict().ToDictionary(
            kv => kv.Key == "lm_head" ? "lm_head.weight" : "model." + kv.Key, kv => kv.Value.detach().clone());
        Safetensors.SaveStateDict(Path.Combine(dir, "model.safetensors"), state);
        WriteTokenizer(Path.Combine(dir, "tokenizer.json"));
        return dir;
    }

    /// <summary>GPT-2's byte → printable character map: every byte has a one-character token, so any text tokenises.</summary>
    public static string[] ByteAlphabet()
    {
        var chars = new string[256];
        int extra = 0;
        for (int b = 0; b < 256; b++)
            chars[b] = b is >= 33 and <= 126 or >= 161 and <= 172 or >= 174 ? ((char)b).ToString() : ((char)(256 + extra++)).ToString();
        return chars;
    }

    /// <summary>A decoder folder whose tokenizer covers every byte (ids 1…256) plus a few merges; vocab 272.</summary>
    public static string WriteByteLevel(DecoderConfig config, int seed = 5, string? dir = null)
    {
        dir = Write(config with { VocabSize = 272 }, seed, dir);
        var vocab = new Dictionary<string, int> { ["<|endoftext|>"] = 0 };
        var alphabet = ByteAlphabet();
        for (int b = 0; b < 256; b++) vocab[alphabet[b]] = b + 1;
        string[] merges = ["Ġ t", "h e", "Ġt he", "i n", "o n", "e r"];
        foreach (var m in merges) vocab[m.Replace(" ", "")] = vocab.Count;
        var json = new
        {
            version = "1.0",
            added_tokens = new[] { new { id = 0, content = "<|endoftext|>", special = true } },
            pre_tokenizer = new { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = true },
            model = new { type = "BPE", vocab, merges },
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), JsonSerializer.Serialize(json));
        return dir;
    }

    public static void WriteTokenizer(string file)
    {
        var json = new
        {
            version = "1.0",
            added_tokens = new[] { new { id = 0, content = "<|endoftext|>", special = true } },
            pre_tokenizer = new { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = true },
            model = new { type = "BPE", vocab = Vocab, merges = new[] { "h e", "l l", "he ll", "hell o", "Ġ w" } },
        };
        File.WriteAllText(file, JsonSerializer.Serialize(json));
    }
}

/// <summary>Element-wise float comparison within an absolute tolerance (for Assert.Equal on arrays).</summary>
internal sealed class Tolerance(float tolerance) : IEqualityComparer<float>
{
    public bool Equals(float x, float y) => Math.Abs(x - y) <= tolerance;
    public int GetHashCode(float obj) => 0;
}
