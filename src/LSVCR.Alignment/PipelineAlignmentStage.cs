using LSVCR.Data;
using LSVCR.Pipeline;

namespace LSVCR.Alignment;

/// <summary>
/// Stage 1 in the embedded pipeline's alignment slot (<see cref="PipelineOptions.Alignment"/>): runs
/// <see cref="AlignTrainer"/> on a bounded sample (<see cref="PipelineDefaults"/>) and hands the re-encoded embeddings
/// and the aligned SR weights to stage 2. Rerunning resumes or reuses the run folder like every other step.
/// </summary>
public sealed class PipelineAlignmentStage(AlignOptions options) : IAlignmentStage
{
    /// <summary>
    /// The pipeline's CPU sample: 96 mixed examples in batches of 8 with histories ≤ 10 and prompts ≤ 256 tokens, sized
    /// so stage 1 (training + re-encoding the default 13k texts through MiniLM) adds about 5-7 minutes on 2 cores.
    /// The reference run (all examples, histories ≤ 20, a 6B LLM) needs a GPU machine: `lsvcr align`.
    /// </summary>
    public static AlignOptions PipelineDefaults => new() { Examples = 96, BatchSize = 8, MaxHistory = 10, PromptTokens = 256, ItemTokens = 24 };

    public Task<AlignmentOutput> RunAsync(LsvcrDataset data, string embeddingsDir, string outDir, IProgress<JobProgress>? progress, CancellationToken ct) =>
        Task.Factory.StartNew(() =>
        {
            var summary = Path.Combine(outDir, AlignTrainer.SummaryFile);
            var sr = Path.Combine(outDir, AlignTrainer.SrFile);
            var emb = Path.Combine(outDir, AlignTrainer.EmbeddingsDir);
            bool reused = File.Exists(summary) && File.Exists(sr) && File.Exists(Path.Combine(emb, ReferenceLayout.CommentEmbeddingsFile)) && SameOptions(summary, data);
            if (!reused) AlignTrainer.Run(data, options, outDir, progress, ct);
            return new AlignmentOutput(emb, sr, reused);
        }, ct, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    /// <summary>A finished run is reused only when it was made with these options (align.json records them).</summary>
    private bool SameOptions(string summary, LsvcrDataset data)
    {
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(summary));
            return doc.RootElement.TryGetProperty("optionsKey", out var key) && key.GetString() == AlignTrainer.OptionsKey(options, data);
        }
        catch (System.Text.Json.JsonException) { return false; }
    }
}
