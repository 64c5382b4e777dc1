using System.ComponentModel.DataAnnotations;

namespace LSVCR.Serving;

/// <summary>Configuration section <c>Serving</c>.</summary>
public sealed class ServingOptions
{
    public const string Section = "Serving";

    /// <summary>Folder of bundles (one sub-folder per bundle, each with a manifest.json) that is polled for new models.</summary>
    [Required] public string BundleRoot { get; set; } = "bundles";
    /// <summary>How often <see cref="BundleRoot"/> is polled.</summary>
    [Range(typeof(TimeSpan), "00:00:00.050", "01:00:00")] public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(10);
    /// <summary>The artifact store's pointer at the latest published bundle (<see cref="ServingBundlePointer"/>), polled
    /// when an artifact store is configured; empty = not polled.</summary>
    [RegularExpression(@"^([A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*)?$")] public string StorePointer { get; set; } = ServingBundlePointer.DefaultName;
    /// <summary>How often <see cref="StorePointer"/> is read (one small GET each time).</summary>
    [Range(typeof(TimeSpan), "00:00:00.050", "01:00:00")] public TimeSpan StorePollInterval { get; set; } = TimeSpan.FromSeconds(30);
    /// <summary>A batch closes when it holds this many requests…</summary>
    [Range(1, 4096)] public int MaxBatchSize { get; set; } = 32;
    /// <summary>…or this long after its first request arrived.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:00:01")] public TimeSpan MaxBatchDelay { get; set; } = TimeSpan.FromMilliseconds(1);
    /// <summary>Requests admitted per endpoint (queued or in a running batch); beyond it the service answers 429. Sized
    /// to the latency budget: on 2 cores a 32-request batch costs ≈ 25–50 ms of CPU, so 64 admitted requests keep an
    /// accepted request's wait to about two batches.</summary>
    [Range(1, 1_000_000)] public int QueueCapacity { get; set; } = 64;
    /// <summary>Batches run concurrently per endpoint (each on its own thread). 0 = one per core, so one endpoint's
    /// traffic alone can use every core.</summary>
    [Range(0, 256)] public int Workers { get; set; }
    /// <summary>ONNX Runtime intra-op threads per batch. 0 = 1: parallelism comes from concurrent batches (one per
    /// core), which measured better than splitting one small batch's ops across threads; raise it on big machines
    /// with few, large batches.</summary>
    [Range(0, 256)] public int IntraOpThreads { get; set; }
    /// <summary>"cpu", or "cuda" with the Microsoft.ML.OnnxRuntime.Gpu package where a GPU exists.</summary>
    [RegularExpression("^(cpu|cuda)$")] public string Provider { get; set; } = "cpu";
    /// <summary>Benchmarks only: when set, ONNX Runtime writes its per-operator profile (JSON) with this path prefix.</summary>
    public string? OnnxProfilePrefix { get; set; }
    /// <summary>Seconds a 429 tells the client to wait.</summary>
    [Range(1, 3600)] public int RetryAfterSeconds { get; set; } = 1;
    /// <summary>Largest request body in bytes (413 beyond).</summary>
    [Range(1024, 64 * 1024 * 1024)] public long MaxBodyBytes { get; set; } = 1 << 20;
    /// <summary>Most ids one request may carry (history videos + history comments + exclusions + candidates).</summary>
    [Range(1, 1_000_000)] public int MaxIds { get; set; } = 10_000;
    /// <summary>Key of the admin endpoints (header X-Api-Key); empty = admin endpoints refuse every call.</summary>
    public string AdminApiKey { get; set; } = "";

    public int EffectiveWorkers => Workers > 0 ? Workers : Math.Max(1, Environment.ProcessorCount);
    public int EffectiveIntraOpThreads => IntraOpThreads > 0 ? IntraOpThreads : 1;
}
