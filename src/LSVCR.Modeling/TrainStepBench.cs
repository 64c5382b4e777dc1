using System.Diagnostics;
using LSVCR.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace LSVCR.Modeling;

/// <summary>Options of <see cref="TrainStepBench"/>; defaults are the reference's Rec fine-tuning step.</summary>
public sealed record TrainBenchOptions
{
    public int Batch { get; init; } = 512;
    public int History { get; init; } = 50;
    public int Videos { get; init; } = 20_000;
    /// <summary>Comments in the synthetic catalogue per video.</summary>
    public int CommentsPerVideo { get; init; } = 3;
    /// <summary>Interacted comments per comment-history entry (0-padded).</summary>
    public int CommentsPerEntry { get; init; } = 3;
    /// <summary>E, the text-embedding width.</summary>
    public int TextDim { get; init; } = 256;
    public int Hidden { get; init; } = 64;
    public double IdTextWeight { get; init; } = 0.1;
    public int Steps { get; init; } = 10;
    public int Warmup { get; init; } = 2;
    /// <summary>Data-parallel slices of the batch (<see cref="SrLoss.Backward"/>), as fine-tuning runs them.</summary>
    public int Shards { get; init; } = SrLoss.DefaultShards;
    public int Seed { get; init; } = 1;
    /// <summary>Run the model on the fused CPU kernels where they apply (<see cref="ModelBackend.Select"/>); false =
    /// the plain modules.</summary>
    public bool CpuKernels { get; init; } = true;
}

/// <summary>Measured figures of one bench run.</summary>
/// <param name="CpuSeconds">Process CPU time over the measured steps: on a shared machine wall time includes waiting for
/// other processes, CPU time does not (samples per CPU-second × threads bounds the idle-machine throughput).</param>
/// <param name="Backend">The <see cref="ModelBackend.Name"/> that ran; <paramref name="Threads"/> libtorch's thread count.</param>
public sealed record TrainBenchResult(int Steps, int Batch, double Seconds, double SamplesPerSecond, double FirstLoss,
    double LastLoss, IReadOnlyDictionary<string, double> PhaseSeconds, double CpuSeconds, string Backend, int Threads)
{
    public double SamplesPerCpuSecond => Steps * (double)Batch / CpuSeconds;
}

/// <summary>
/// Throughput of one Rec training step as fine-tuning runs it: random synthetic batch and text tables, full softmax
/// over all videos, id–text loss, AdamW (lr 1e-3, wd 1e-5). Not a test: timings go to <c>lsvcr bench train</c>.
/// Thread count, allocator and OpenMP policy are the host's (<see cref="Cpu.CpuHost"/>), as in fine-tuning.
/// </summary>
public static class TrainStepBench
{
    public static TrainBenchResult Run(TrainBenchOptions o, IProgress<JobProgress>? progress = null, CancellationToken ct = default)
    {
        if (o.Batch < 1 || o.History < 1 || o.Videos < 2 || o.Steps < 1 || o.Warmup < 0 || o.Shards < 1)
            throw new ArgumentException("bench train: batch, history, steps, shards ≥ 1, videos ≥ 2, warmup ≥ 0.");
        using var generator = new Generator(unchecked((ulong)o.Seed));
        var config = new RecComConfig
        {
            PhotoCount = o.Videos + 1, CommentCount = o.Videos * o.CommentsPerVideo + 1, TextDim = o.TextDim,
            Hidden = o.Hidden, MaxPosition = Math.Max(50, o.History),
        };
        using var photoText = randn(config.PhotoCount, o.TextDim, generator: generator);
        using var commentText = randn(config.CommentCount, o.TextDim, generator: generator);
        using var model = new RecCom(config, photoText, commentText, ModelBackend.Select(CPU, ScalarType.Float32, o.CpuKernels), generator);
        model.train();
        using var optimizer = optim.AdamW(model.parameters(), lr: 1e-3, weight_decay: 1e-5);
        var batches = Enumerable.Range(0, 4).Select(_ => RandomBatch(o, config, generator)).ToArray();
        var phases = new Dictionary<string, double> { ["forward+backward"] = 0, ["optimizer"] = 0 };
        double first = double.NaN, last = double.NaN;
        var total = o.Warmup + o.Steps;
        var clock = new Stopwatch();
        var phase = new Stopwatch();
        using var process = Process.GetCurrentProcess();
        var cpuStart = TimeSpan.Zero;
        try
        {
            for (var step = 0; step < total; step++)
            {
                ct.ThrowIfCancellationRequested();
                if (step == o.Warmup)
                {
                    process.Refresh();
                    cpuStart = process.TotalProcessorTime;
                    clock.Start();
                }
                var measured = step >= o.Warmup;
                using var scope = NewDisposeScope();
                phase.Restart();
                optimizer.zero_grad();
                var losses = SrLoss.Backward(model, batches[step % batches.Length], TaskKind.Rec, null, o.IdTextWeight, o.Shards);
                if (measured) phases["forward+backward"] += phase.Elapsed.TotalSeconds;
                phase.Restart();
                optimizer.step();
                if (measured) phases["optimizer"] += phase.Elapsed.TotalSeconds;
                last = losses.Total;
                if (step == 0) first = last;
                progress?.Report(new JobProgress(step < o.Warmup ? "warmup" : "train steps",
                    step < o.Warmup ? step + 1 : step + 1 - o.Warmup, step < o.Warmup ? o.Warmup : o.Steps, $"loss {last:F3}"));
            }
        }
        finally
        {
            foreach (var b in batches) b.Dispose();
        }
        clock.Stop();
        process.Refresh();
        var cpu = (process.TotalProcessorTime - cpuStart).TotalSeconds;
        var seconds = clock.Elapsed.TotalSeconds;
        return new TrainBenchResult(o.Steps, o.Batch, seconds, o.Steps * (double)o.Batch / seconds, first, last, phases, cpu, model.Backend.Name,
            get_num_threads());
    }

    /// <summary>Full-length histories of random videos; comment entries with 1..K random comments.</summary>
    public static SrBatch RandomBatch(TrainBenchOptions o, RecComConfig c, Generator generator)
    {
        using var scope = NewDisposeScope();
        var (b, l, k) = (o.Batch, o.History, o.CommentsPerEntry);
        var comments = randint(1, c.CommentCount, [b, l, k], generator: generator);
        var keep = arange(k).unsqueeze(0).unsqueeze(0).lt(randint(1, k + 1, [b, l, 1], generator: generator));
        var batch = new SrBatch
        {
            PhotoHistory = randint(1, c.PhotoCount, [b, l], generator: generator).MoveToOuterDisposeScope(),
            PhotoHistoryComment = randint(0, c.CommentCount, [b, l], generator: generator).MoveToOuterDisposeScope(),
            CommentHistoryPhoto = randint(1, c.PhotoCount, [b, l], generator: generator).MoveToOuterDisposeScope(),
            CommentHistoryComments = CommentBags.FromPadded(comments.mul(keep)).MoveToOuterDisposeScope(),
            Target = randint(1, c.PhotoCount, [b], generator: generator).MoveToOuterDisposeScope(),
        };
        return batch;
    }
}
