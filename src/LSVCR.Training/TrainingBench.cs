using System.Diagnostics;
using LSVCR.Data;
using LSVCR.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace LSVCR.Training;

/// <summary>Throughput of the two halves of training: batch assembly alone and full training steps (assembly overlapped).</summary>
public sealed record TrainingBenchResult(int Batches, int BatchSize, double AssemblySamplesPerSecond, double TrainSamplesPerSecond, double SecondsPerStep)
{
    /// <summary>How many times faster the background assembly is than the model consumes: ≫ 1 means the model never waits.</summary>
    public double Headroom => AssemblySamplesPerSecond / TrainSamplesPerSecond;
}

/// <summary>Backs <c>lsvcr bench fine-tune</c>: measurements, never assertions.</summary>
public static class TrainingBench
{
    public static TrainingBenchResult Measure(LsvcrDataset data, FloatMatrix photoEmbs, FloatMatrix commentEmbs, TaskKind task, string variant,
        TrainOptions options, int batches, IProgress<JobProgress>? progress = null, CancellationToken ct = default)
    {
        options = TrainSettings.Resolve(options);
        TextEmbeddings.Check(photoEmbs, commentEmbs, data.Catalog);
        var config = Variants.ModelConfig(variant, task, data.Catalog.PhotoCount, data.Catalog.CommentCount, photoEmbs.Cols,
            TrainSettings.ModelConfig(options, data.Catalog.PhotoCount, data.Catalog.CommentCount, photoEmbs.Cols));
        var source = new BatchSource(data.Catalog, data[task, Split.Train], training: true, config.MaxPosition, Variants.DropsComments(variant), options.Negatives);
        int n = Math.Min(batches, (source.TrainableExamples.Length + options.BatchSize - 1) / options.BatchSize);
        if (n == 0) throw new LsvcrException($"{TaskNames.FileName(task, Split.Train)}: no training examples");

        var clock = Stopwatch.StartNew();
        int assembled = 0;
        foreach (var b in source.Epoch(options.BatchSize, new Random(options.Seed), options.Prefetch, ct).Take(n))
        {
            assembled += b.Size;
            progress?.Report(new("bench assembly", assembled, (long)n * options.BatchSize));
        }
        double assembly = assembled / clock.Elapsed.TotalSeconds;

        using var generator = new Generator(unchecked((ulong)options.Seed));
        using var model = ModelStore.Create(config, photoEmbs, commentEmbs, options.CpuKernels, generator);
        using var optimizer = TrainSettings.Optimizer(model.parameters(), options);
        model.train();
        int trained = 0, steps = 0;
        clock.Restart();
        foreach (var b in source.Epoch(options.BatchSize, new Random(options.Seed), options.Prefetch, ct).Take(n))
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            using var sr = b.ToSrBatch();
            SrLoss.Backward(model, sr, task, b.CandidateTensor(), options.IdTextWeight, options.Shards);
            optimizer.step();
            trained += b.Size;
            steps++;
            progress?.Report(new("bench training", trained, (long)n * options.BatchSize));
        }
        double seconds = clock.Elapsed.TotalSeconds;
        return new TrainingBenchResult(n, options.BatchSize, assembly, trained / seconds, seconds / steps);
    }
}
