using LSVCR.Data;
using LSVCR.Embeddings;
using LSVCR.Training;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace LSVCR.Jobs.Tests;

[Collection(JobsCollection.Name)]
public sealed class OtherJobTests(JobsFixture fixture)
{
    [Fact]
    public async Task Evaluation_scores_the_checkpoint_and_popularity_on_the_test_split_and_matches_the_library()
    {
        var trained = await fixture.Trained;
        var job = fixture.Services.GetRequiredService<EvaluationJobService>();
        var request = new EvaluationJobRequest(fixture.Dataset, fixture.Embeddings, trained.Job.Output, "runs/shared/report-rec");
        var result = await job.RunAsync(request);

        Assert.False(result.Job.Reused);
        Assert.Equal(TaskKind.Rec, result.Task);
        Assert.Equal(["sampled", "full"], result.Model.Select(r => r.Protocol));
        Assert.Equal(["sampled", "full"], result.Popularity.Select(r => r.Protocol));
        int testExamples = fixture.Data[TaskKind.Rec, Split.Test].Count;
        Assert.All(result.Model.Concat(result.Popularity), r => Assert.Equal(testExamples, r.Examples));

        // The same numbers as the library computes directly on the same inputs.
        var popularity = Evaluator.Evaluate(new PopularityScorer(fixture.Data), fixture.Data, TaskKind.Rec, Split.Test, "sampled", new EvalOptions());
        Assert.Equal(popularity["ndcg@5"], result.Popularity[0]["ndcg@5"], 12);
        Assert.Equal(result.Model[0]["ndcg@5"] > popularity["ndcg@5"], result.BeatsPopularity());

        var again = await job.RunAsync(request);
        Assert.True(again.Job.Reused);
        Assert.Equal(result.Model[1]["recall@10"], again.Model[1]["recall@10"]);
        Assert.Equal("report", (await fixture.Store.GetManifestAsync(result.Job.Output)).Kind);
    }

    [Fact]
    public async Task Embeddings_job_encodes_the_dataset_set_with_MiniLM_and_publishes_the_npy_files()
    {
        var job = fixture.Services.GetRequiredService<EmbeddingsJobService>();
        var request = new EmbeddingsJobRequest(fixture.Dataset, "embeddings/tiny/minilm") { Embed = new EmbedOptions { Threads = 1 } };
        var result = await job.RunAsync(request);

        Assert.False(result.Job.Reused);
        Assert.Equal("minilm", result.Encoder);
        Assert.Equal(384, result.Dimension);
        var opened = await fixture.Store.OpenAsync(result.Job.Output);
        Assert.Equal([EmbeddingManifest.CommentFile, EmbeddingManifest.FileName, EmbeddingManifest.PhotoFile], opened.Manifest.Files.Select(f => f.Path));
        var (photos, comments) = TextEmbeddings.Load(opened.Directory, fixture.Data.Catalog);
        Assert.Equal(384, photos.Cols);
        Assert.Equal(fixture.Data.Catalog.CommentCount, comments.Rows);
        // Row 1 is the first video's title, encoded and L2-normalised; row 0 (pad) stays zero.
        Assert.Equal(1.0, Math.Sqrt(photos.Row(1).ToArray().Sum(x => (double)x * x)), 4);
        Assert.All(photos.Row(0).ToArray(), x => Assert.Equal(0f, x));
        Assert.Equal(EmbeddingJob.DatasetHash(fixture.Data.Catalog), opened.Manifest.Metadata["dataset_text_hash"]);

        var again = await job.RunAsync(request);
        Assert.True(again.Job.Reused);
        Assert.Equal(result.Job.Output, again.Job.Output);
        // The encoder is keyed by what it is (model bytes, tokenizer, limits), so another instruction is another step.
        Assert.NotEqual(job.StepKey(request), job.StepKey(request with { Embed = new EmbedOptions { Threads = 1, Instruction = "query: " } }));
        Assert.Equal(job.StepKey(request), job.StepKey(request with { Embed = new EmbedOptions { Threads = 2 } }));
    }

    [Fact]
    public async Task Experiment_job_publishes_the_report_and_the_trained_variants_histories()
    {
        var job = fixture.Services.GetRequiredService<ExperimentJobService>();
        var request = new ExperimentJobRequest(fixture.Dataset, fixture.Embeddings, "runs/experiment/report")
        {
            Variants = [Variants.Full, Variants.Popularity], Tasks = [TaskKind.Rec], Training = JobsFixture.Training with { Epochs = 1 },
        };
        var result = await job.RunAsync(request);

        // report.md's pictures (the curves of the trained variant, ndcg@10 bars per protocol) and report.html go with it.
        Assert.Equal(["curves-rec.svg", "ndcg-10-rec-full.svg", "ndcg-10-rec-sampled.svg", "rec/full/history.json", "report.html", "report.json", "report.md"],
            (await fixture.Store.GetManifestAsync(result.Job.Output)).Files.Select(f => f.Path));
        Assert.Equal(4, result.Report.Rows.Count);  // 2 variants × 2 Rec protocols
        var popularity = Evaluator.Evaluate(new PopularityScorer(fixture.Data), fixture.Data, TaskKind.Rec, Split.Test, "full", new EvalOptions());
        Assert.Equal(popularity["recall@10"], result.Report.Get(TaskKind.Rec, Variants.Popularity, "full")["recall@10"], 12);
        Assert.Equal(1, result.Report.Rows.First(r => r.Variant == Variants.Full).EpochsRun);
    }

    [Fact]
    public void Options_are_bound_from_configuration_and_bad_ones_fail_at_start_with_the_section_and_setting()
    {
        using var good = JobsFixture.Build(new()
        {
            ["ConnectionStrings:artifacts"] = Path.Combine(fixture.Root, "options-store"),
            ["Jobs:FineTuning:Training:BatchSize"] = "16",
            ["Jobs:FineTuning:Training:Schedule"] = "linear",
            ["Jobs:Evaluation:Evaluation:SampledNegatives"] = "49",
            ["Jobs:Embeddings:Embed:BatchSize"] = "8",
        });
        good.GetRequiredService<IStartupValidator>().Validate();
        Assert.Equal(16, good.GetRequiredService<IOptions<FineTuningJobOptions>>().Value.Training.BatchSize);
        Assert.Equal("linear", good.GetRequiredService<IOptions<FineTuningJobOptions>>().Value.Training.Schedule);
        Assert.Equal(49, good.GetRequiredService<IOptions<EvaluationJobOptions>>().Value.Evaluation.SampledNegatives);
        Assert.Equal(8, good.GetRequiredService<IOptions<EmbeddingsJobOptions>>().Value.Embed.BatchSize);

        using var bad = JobsFixture.Build(new()
        {
            ["ConnectionStrings:artifacts"] = Path.Combine(fixture.Root, "options-store"),
            ["Jobs:FineTuning:Training:Epochs"] = "0",
            ["Jobs:Embeddings:Embed:Device"] = "tpu",
        });
        // One failure per invalid section, all reported at once.
        var failure = Assert.Throws<AggregateException>(() => bad.GetRequiredService<IStartupValidator>().Validate());
        Assert.Equal(2, failure.InnerExceptions.Count);
        Assert.All(failure.InnerExceptions, e => Assert.IsType<OptionsValidationException>(e));
        Assert.Contains("Jobs:FineTuning", failure.Message);
        Assert.Contains("epochs must be at least 1 (got 0)", failure.Message);
        Assert.Contains("Jobs:Embeddings", failure.Message);
        Assert.Contains("'tpu'", failure.Message);

        using var noStore = JobsFixture.Build([]);
        Assert.Contains("ConnectionStrings:artifacts",
            Assert.Throws<OptionsValidationException>(() => noStore.GetRequiredService<IStartupValidator>().Validate()).Message);
    }
}

public sealed class ContentHashTests
{
    [Fact]
    public void Combine_counts_boundaries_and_nulls()
    {
        Assert.NotEqual(ContentHash.Combine("ab", "c"), ContentHash.Combine("a", "bc"));
        Assert.NotEqual(ContentHash.Combine("a", null), ContentHash.Combine("a", ""));
        Assert.Equal(ContentHash.Combine("x", "y"), ContentHash.Combine(new List<string?> { "x", "y" }));
        Assert.Equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", ContentHash.Of("abc"));  // FIPS 180-2 test vector
    }

    [Fact]
    public void A_step_key_changes_with_any_input_hash_or_option_and_with_their_order()
    {
        var key = ContentHash.StepKey("fine-tuning", ["d1", "e1"], new { lr = 1e-3 });
        Assert.Equal(key, ContentHash.StepKey("fine-tuning", ["d1", "e1"], new { lr = 1e-3 }));
        Assert.NotEqual(key, ContentHash.StepKey("fine-tuning", ["d1", "e2"], new { lr = 1e-3 }));
        Assert.NotEqual(key, ContentHash.StepKey("fine-tuning", ["e1", "d1"], new { lr = 1e-3 }));
        Assert.NotEqual(key, ContentHash.StepKey("fine-tuning", ["d1", "e1"], new { lr = 2e-3 }));
        Assert.NotEqual(key, ContentHash.StepKey("evaluation", ["d1", "e1"], new { lr = 1e-3 }));
        Assert.Matches("^[0-9a-f]{64}$", key);
    }
}
