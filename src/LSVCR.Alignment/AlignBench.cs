using System.Diagnostics;
using LSVCR.Data;
using static TorchSharp.torch;

namespace LSVCR.Alignment;

/// <summary>Throughput of stage-1 training steps against the FLOP bound of the same steps on this machine.</summary>
/// <param name="StepFlops">FLOPs per step: 2 × the LLM's forward (frozen base: the backward computes input gradients,
/// one more product per projection, and LoRA's rank-r weight gradients are negligible) + 1 × its attention (the
/// backward's extra score product), over the shapes the steps actually ran (padding included); the SR model (d = 64)
/// and the heads are below 1 % and not counted.</param>
/// <param name="PeakGflops">libtorch float32 GEMM throughput measured here with the same threads — the bound's rate.</param>
public sealed record AlignBenchResult(int Steps, int BatchSize, int MaxHistory, double Seconds, double ExamplesPerSecond,
    double StepFlops, double PeakGflops, double BoundExamplesPerSecond, double FractionOfBound, int Threads, double CpuSeconds)
{
    /// <summary>Examples per second had the process had its threads' cores to itself: examples ÷ (CPU seconds ÷ threads).
    /// On a shared machine the wall-clock figure mostly measures the other tenants; this one measures the code.</summary>
    public double ExamplesPerCoreSecond => Steps * BatchSize / Math.Max(1e-9, CpuSeconds / Threads);
}

public static class AlignBench
{
    public static AlignBenchResult Run(LsvcrDataset data, AlignOptions o, int steps, IProgress<JobProgress>? progress = null, CancellationToken ct = default)
    {
        o.Validate();
        if (o.Threads is { } t) set_num_threads(t);
        manual_seed(o.Seed);
        using var models = AlignmentModels.Create(o);
        var sampler = new Stage1Sampler(data) { MaxHistory = o.MaxHistory, MaxEntryComments = o.MaxEntryComments };
        var pool = sampler.Pool();
        var prompts = new PromptBuilder(data.Catalog, models.Llm.Tokenizer, Math.Min(o.PromptTokens, models.Llm.MaxTokens), models.Llm.HasLmHead);
        var items = new ItemEncoder(models.Llm, models.Heads, prompts.Tokens, o.ItemTokens, models.Device);
        var step = new Stage1Step(data.Catalog, models.Llm, models.Heads, models.Sr, prompts, items, models.Device);
        using var optimizer = optim.AdamW(models.Trainable().Select(p => p.Parameter), o.Lr);
        models.Train(true);
        var rng = new Random(o.Seed);
        using var gen = new Generator((ulong)o.Seed);
        // The longest histories: the reference run's ≤ 20 entries per behaviour are the case to measure.
        var longest = Enumerable.Range(0, pool.Count).OrderByDescending(i => Length(data, pool[i])).Take(Math.Max(64, o.BatchSize * (steps + 1))).ToArray();
        double flops = 0, seconds = 0, cpu = 0;
        var process = Process.GetCurrentProcess();
        for (int s = 0; s <= steps; s++)
        {
            ct.ThrowIfCancellationRequested();
            var batch = Enumerable.Range(0, o.BatchSize).Select(_ => longest[rng.Next(longest.Length)]).Select(i => sampler.Draw(pool[i].Task, pool[i].Index, rng)).ToList();
            items.Shapes = [];
            step.PromptShapes = [];
            process.Refresh();
            var cpuStart = process.TotalProcessorTime;
            var clock = Stopwatch.StartNew();
            using (var scope = NewDisposeScope())
            {
                optimizer.zero_grad();
                step.Forward(batch, gen).Total.backward();
                optimizer.step();
            }
            clock.Stop();
            process.Refresh();
            if (s == 0) continue; // warm-up: first-call costs of libtorch and the JIT
            seconds += clock.Elapsed.TotalSeconds;
            cpu += (process.TotalProcessorTime - cpuStart).TotalSeconds;
            foreach (var (rows, width) in items.Shapes.Concat(step.PromptShapes))
                flops += StepFlops(models.Llm, rows, width);
            progress?.Report(new("bench align", s, steps, $"{o.BatchSize * s / seconds:F2} examples/s"));
        }
        double peak = PeakGflops();
        double stepFlops = flops / steps;
        double eps = o.BatchSize * steps / seconds;
        double bound = peak * 1e9 / (stepFlops / o.BatchSize);
        return new AlignBenchResult(steps, o.BatchSize, o.MaxHistory, seconds, eps, stepFlops, peak, bound, eps / bound, get_num_threads(), cpu);
    }

    private static double StepFlops(TextBackbone llm, long rows, long width)
    {
        double forward = llm.ForwardFlops(rows, width);
        double attention = llm is MiniLm.BertEncoder bert ? 4.0 * bert.Config.Layers * rows * width * width * bert.Config.Hidden : 0;
        return 2 * forward + attention;
    }

    private static int Length(LsvcrDataset data, (TaskKind Task, int Index) e)
    {
        var set = data[e.Task, Split.Train];
        var (start, end) = set.CommentEntriesOf(e.Index);
        return set.PhotoHistoryOf(e.Index).Length + end - start;
    }

    /// <summary>float32 GEMM GFLOP/s at MiniLM's feed-forward shape ([4096, 384] × [384, 1536]), best of 5 rounds.</summary>
    public static double PeakGflops()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var a = randn(4096, 384);
        var b = randn(384, 1536);
        a.matmul(b);
        double best = 0;
        for (int round = 0; round < 5; round++)
        {
            var clock = Stopwatch.StartNew();
            const int reps = 4;
            for (int i = 0; i < reps; i++) a.matmul(b).Dispose();
            best = Math.Max(best, reps * 2.0 * 4096 * 384 * 1536 / clock.Elapsed.TotalSeconds / 1e9);
        }
        return best;
    }
}
