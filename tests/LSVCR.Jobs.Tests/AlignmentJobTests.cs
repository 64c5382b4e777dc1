using LSVCR.Alignment;
using LSVCR.Data;
using LSVCR.Training;
using Microsoft.Extensions.DependencyInjection;

namespace LSVCR.Jobs.Tests;

[Collection(JobsCollection.Name)]
public sealed class AlignmentJobTests(JobsFixture fixture)
{
    private static readonly AlignOptions Tiny = new() { Examples = 4, BatchSize = 2, MaxHistory = 4, ItemTokens = 16, PromptTokens = 128, Threads = 1, Seed = 1 };

    [Fact]
    public async Task Alignment_publishes_reencoded_embeddings_then_the_weights_and_fine_tuning_starts_from_them()
    {
        var job = fixture.Services.GetRequiredService<AlignmentJobService>();
        var request = new AlignmentJobRequest(fixture.Dataset, "runs/align/alignment", "runs/align/alignment-embeddings") { Align = Tiny };
        var result = await job.RunAsync(request);

        Assert.False(result.Job.Reused);
        Assert.Equal("minilm", result.Backbone);
        Assert.Equal(4, result.Examples);
        var weights = await fixture.Store.GetManifestAsync(result.Job.Output);
        Assert.Equal("alignment", weights.Kind);
        Assert.Equal([AlignTrainer.SummaryFile, AlignTrainer.HeadsFile, AlignTrainer.LoraFile, AlignTrainer.SrFile],
            weights.Files.Select(f => f.Path).Order(StringComparer.Ordinal));
        Assert.Equal("runs/align/alignment-embeddings", weights.Metadata["embeddings_set"]);
        var embeddings = await fixture.Store.GetManifestAsync(result.Embeddings);
        Assert.Equal(("embeddings", weights.Metadata["step_key"]), (embeddings.Kind, embeddings.Metadata["step_key"]));

        // The re-encoded items load as stage-2 inputs (E = 256 from llm_emb_mlp), and the aligned SR weights initialise it.
        var (photos, comments) = TextEmbeddings.Load((await fixture.Store.OpenAsync(result.Embeddings)).Directory, fixture.Data.Catalog);
        Assert.Equal((fixture.Data.Catalog.PhotoCount, 256, 256), (photos.Rows, photos.Cols, comments.Cols));
        var fineTuning = fixture.Services.GetRequiredService<FineTuningJobService>();
        var fromAligned = new FineTuningJobRequest(fixture.Dataset, result.Embeddings, TaskKind.Rec, "runs/align/rec")
        {
            Init = result.Job.Output, Training = JobsFixture.Training with { Epochs = 1 },
        };
        var trained = await fineTuning.RunAsync(fromAligned);
        Assert.Equal(1, trained.EpochsRun);
        Assert.NotEqual(fineTuning.StepKey(fromAligned), fineTuning.StepKey(fromAligned with { Init = null }));

        // Delivered again: nothing is trained, both sets are the ones already published.
        var again = await job.RunAsync(request);
        Assert.True(again.Job.Reused);
        Assert.Equal((result.Job.Output, result.Embeddings), (again.Job.Output, again.Embeddings));
    }

    [Fact]
    public async Task A_retry_after_a_kill_between_the_two_sets_reuses_the_embeddings_set()
    {
        var job = fixture.Services.GetRequiredService<AlignmentJobService>();
        var request = new AlignmentJobRequest(fixture.Dataset, "runs/align-retry/alignment", "runs/align-retry/alignment-embeddings") { Align = Tiny with { Seed = 2 } };
        var first = await job.RunAsync(request);
        var embeddingsBefore = await fixture.Store.GetManifestAsync(first.Embeddings);

        // The weights set is what marks the step done; without it the step runs again and publishes it, while the
        // embeddings set it finds under the same step key stays as it was (its bytes are not rewritten).
        await fixture.Store.DeleteAsync("runs/align-retry/alignment");
        var retried = await job.RunAsync(request);
        Assert.False(retried.Job.Reused);
        Assert.Equal(first.Embeddings, retried.Embeddings);
        Assert.Equal(embeddingsBefore.CreatedUtc, (await fixture.Store.GetManifestAsync(retried.Embeddings)).CreatedUtc);
        Assert.Equal(first.Job.Output.Set, retried.Job.Output.Set);
    }
}
