using System.Text.Json;
using LSVCR.Data;
using LSVCR.Embeddings;
using LSVCR.Training;

namespace LSVCR.Pipeline;

/// <summary>
/// Runs the whole pipeline in one process. Every step writes its artifacts atomically and is skipped on a rerun when
/// its inputs are unchanged (synthetic data by its options, embeddings by the dataset text hash and encoder, training
/// runs by their own resume state), so a killed run restarts where it stopped.
/// </summary>
public static class EmbeddedPipeline
{
    private const string SynthMarker = "synth.json";

    public static async Task<PipelineResult> RunAsync(PipelineOptions options, IProgress<JobProgress>? progress = null,
        CancellationToken ct = default)
    {
        var log = new List<string>();
        Directory.CreateDirectory(options.OutDir);

        var dataDir = options.DataDir ?? Path.Combine(options.OutDir, "data");
        if (options.DataDir is null) log.Add(EnsureSynthetic(dataDir, options.Synth, progress));
        var data = ReferenceLayout.Read(dataDir, progress);
        log.Add($"dataset: {dataDir} ({data.Catalog.PhotoCount - 1} videos, {data.Catalog.CommentCount - 1} comments, " +
                $"{data[TaskKind.Rec, Split.Train].Count} rec / {data[TaskKind.CommRank, Split.Train].Count} comm_rank training examples)");

        var embeddingsDir = Path.Combine(options.OutDir, "embeddings");
        var manifest = await EmbeddingJob.RunAsync(data.Catalog, embeddingsDir, options.Embed, progress, ct);
        log.Add(manifest.Reused
            ? $"embeddings: reusing {embeddingsDir} ({manifest.Encoder}, {manifest.Dimension}-d)"
            : $"embeddings: {embeddingsDir} ({manifest.Encoder}, {manifest.Dimension}-d, {manifest.ChunksResumed}/{manifest.Chunks} chunks resumed)");

        string? alignmentDir = null;
        var plainEmbeddingsDir = embeddingsDir;
        var training = options.Training;
        if (options.Alignment is { } alignment)
        {
            alignmentDir = Path.Combine(options.OutDir, "alignment");
            var aligned = await alignment.RunAsync(data, embeddingsDir, alignmentDir, progress, ct);
            embeddingsDir = aligned.EmbeddingsDir;
            training = training with { Init = aligned.SrCheckpoint };
            log.Add(aligned.Reused ? $"alignment: reusing {alignmentDir}" : $"alignment: {alignmentDir}");
        }
        else log.Add("alignment: skipped (stage 2 starts from fresh weights on the plain embeddings)");

        var reportDir = Path.Combine(options.OutDir, "experiment");
        IReadOnlyList<ExperimentRow> baselineRows = [];
        if (alignmentDir is not null && options.Variants.Contains(Variants.Full))
        {
            // The no-alignment row: stage 2 of the full model from fresh weights on the plain embeddings, beside the
            // aligned full row, so the report shows what stage 1 changed. It runs first so that the report is written
            // once, whole (a rerun that recomputes nothing then rewrites nothing).
            var (plainPhotos, plainComments) = TextEmbeddings.Load(plainEmbeddingsDir, data.Catalog);
            var baseline = await ExperimentRunner.RunAsync(data, plainPhotos, plainComments, new ExperimentOptions
            {
                OutDir = Path.Combine(options.OutDir, "experiment-no-alignment"),
                Variants = [Variants.Full],
                Tasks = options.Tasks,
                Training = options.Training,
                Evaluation = options.Evaluation,
            }, progress, ct);
            baselineRows = [.. baseline.Rows.Select(r => r with { Variant = Variants.NoAlignment })];
        }
        // The same reader `lsvcr train` uses: it checks the rows against the catalogue (an aligned encoder's output too).
        var (photoEmbs, commentEmbs) = TextEmbeddings.Load(embeddingsDir, data.Catalog);
        var report = await ExperimentRunner.RunAsync(data, photoEmbs, commentEmbs, new ExperimentOptions
        {
            OutDir = reportDir,
            Variants = options.Variants,
            Tasks = options.Tasks,
            Training = training,
            Evaluation = options.Evaluation,
            AdditionalRows = baselineRows,
        }, progress, ct);
        log.Add($"report: {Path.Combine(reportDir, "report.md")}");
        return new PipelineResult(dataDir, embeddingsDir, alignmentDir, reportDir, report, log);
    }

    /// <summary>Generates the synthetic dataset unless the folder already holds one made with the same options.</summary>
    private static string EnsureSynthetic(string dir, SynthOptions synth, IProgress<JobProgress>? progress)
    {
        var marker = Path.Combine(dir, SynthMarker);
        var wanted = JsonSerializer.Serialize(synth);
        if (File.Exists(marker) && File.ReadAllText(marker) == wanted)
            return $"synthetic dataset: reusing {dir}";
        var dataset = SyntheticDataset.Generate(synth, progress);
        ReferenceLayout.Write(dataset, dir, progress);
        var tmp = marker + ".tmp";
        File.WriteAllText(tmp, wanted);
        File.Move(tmp, marker, overwrite: true);
        return $"synthetic dataset: generated {synth.Users} users (seed {synth.Seed}) into {dir}";
    }
}
