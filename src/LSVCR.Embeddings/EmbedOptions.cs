namespace LSVCR.Embeddings;

/// <summary>How <see cref="EmbeddingJob"/> and <see cref="TextEmbedder"/> encode texts.</summary>
public sealed record EmbedOptions
{
    /// <summary>The built-in encoder id. Only <c>minilm</c> (all-MiniLM-L6-v2) exists; ignored when <see cref="ModelPath"/> is set.</summary>
    public string Encoder { get; init; } = TextEmbedder.MiniLm;

    /// <summary>An ONNX text encoder (inputs input_ids, attention_mask, optional token_type_ids; output last_hidden_state).</summary>
    public string? ModelPath { get; init; }

    /// <summary>tokenizer.json or vocab.txt (or a folder holding one); defaults to the files next to <see cref="ModelPath"/>.</summary>
    public string? TokenizerPath { get; init; }

    /// <summary>Prefixed verbatim to every text before tokenisation (e.g. "query: " for E5-style encoders).</summary>
    public string? Instruction { get; init; }

    /// <summary>Texts per ONNX Runtime call; texts are sorted by token count first so a batch pads little.</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>Worker threads running batches concurrently on the one session; 0 = all cores.</summary>
    public int Threads { get; init; }

    /// <summary>ONNX Runtime intra-op threads per worker. 1 with one worker per core beat 2 intra-op threads on short texts (docs/embeddings.md).</summary>
    public int IntraOpThreads { get; init; } = 1;

    /// <summary><c>cpu</c> or <c>cuda</c>; cuda falls back to cpu with a warning when the CUDA provider is unavailable.</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>Token limit per text (including [CLS]/[SEP]); 0 = the model's own limit (256 for MiniLM).</summary>
    public int MaxTokens { get; init; }

    /// <summary>Distinct texts per resumable chunk file.</summary>
    public int ChunkSize { get; init; } = 4096;

    internal int EffectiveThreads => Threads > 0 ? Threads : Environment.ProcessorCount;

    /// <summary>Checks the values (and that a given model file exists) before any slow work; throws <see cref="LsvcrException"/>.</summary>
    public void Validate()
    {
        if (BatchSize < 1) throw new LsvcrException($"BatchSize must be at least 1 (got {BatchSize})");
        if (Threads < 0) throw new LsvcrException($"Threads must be 0 (all cores) or more (got {Threads})");
        if (IntraOpThreads < 1) throw new LsvcrException($"intra-op threads must be at least 1 (got {IntraOpThreads})");
        if (MaxTokens < 0 || MaxTokens == 1) throw new LsvcrException($"max tokens must be 0 (model limit) or at least 2 (got {MaxTokens})");
        if (ChunkSize < 1) throw new LsvcrException($"chunk size must be at least 1 (got {ChunkSize})");
        if (Device is not ("cpu" or "cuda")) throw new LsvcrException($"Device must be cpu or cuda (got '{Device}')");
        if (ModelPath is null && !string.Equals(Encoder, TextEmbedder.MiniLm, StringComparison.OrdinalIgnoreCase))
            throw new LsvcrException($"unknown encoder '{Encoder}': the built-in encoder is '{TextEmbedder.MiniLm}'; give an ONNX model path (ModelPath) for others");
        if (ModelPath is not null && !File.Exists(ModelPath)) throw new LsvcrException($"{ModelPath}: model file not found");
    }
}
