using System.Diagnostics;
using System.Diagnostics.Metrics;
using LSVCR.Artifacts;
using LSVCR.Training;
using Microsoft.Extensions.DependencyInjection;

namespace LSVCR.Jobs.Tests;

[Collection(JobsCollection.Name)]
public sealed class FineTuningJobTests(JobsFixture fixture)
{
    private FineTuningJobService Job => fixture.Services.GetRequiredService<FineTuningJobService>();

    [Fact]
    public async Task Publishes_the_best_checkpoint_and_history_under_its_step_key()
    {
        var result = await fixture.Trained;

        Assert.False(result.Job.Reused);
        Assert.Equal(2, result.EpochsRun);
        Assert.InRange(result.BestEpoch, 1, 2);
        var manifest = await fixture.Store.GetManifestAsync(result.Job.Output);
        Assert.Equal("checkpoint", manifest.Kind);
        Assert.Equal(["best/config.json", "best/model.safetensors", "history.json"], manifest.Files.Select(f => f.Path));
        var request = new FineTuningJobRequest(fixture.Dataset, fixture.Embeddings, TaskKind.Rec, "runs/shared/rec");
        Assert.Equal(Job.StepKey(request), manifest.Metadata["step_key"]);
        Assert.Equal(result.Job.StepKey, manifest.Metadata["step_key"]);
        Assert.Equal("full", manifest.Metadata["variant"]);

        // The published checkpoint is a model the libraries load, over the embeddings it was trained with.
        var opened = await fixture.Store.OpenAsync(result.Job.Output);
        var embeddings = await fixture.Store.OpenAsync(fixture.Embeddings);
        var (photos, comments) = TextEmbeddings.Load(embeddings.Directory, fixture.Data.Catalog);
        var (model, info) = ModelStore.Load(opened.Directory, photos, comments);
        model.Dispose();
        Assert.Equal(result.BestEpoch, info.Epoch);
        Assert.Equal(result.BestValNdcg5, info.ValNdcg5, 12);
        // The work folder went once the output was published.
        Assert.False(Directory.Exists(Path.Combine(fixture.WorkDirectory, FineTuningJobService.Step, result.Job.StepKey[..32])));
    }

    [Fact]
    public async Task A_second_delivery_of_the_same_step_trains_nothing_and_returns_the_published_set()
    {
        var first = await fixture.Trained;
        var reports = new List<JobProgress>();
        var again = await Job.RunAsync(new FineTuningJobRequest(fixture.Dataset, fixture.Embeddings, TaskKind.Rec, "runs/shared/rec"),
            new SyncProgress(reports.Add));

        Assert.True(again.Job.Reused);
        Assert.Equal(first.Job.Output, again.Job.Output);
        Assert.Equal(first.BestEpoch, again.BestEpoch);
        Assert.Empty(reports);
    }

    [Fact]
    public async Task Different_embeddings_of_the_same_width_change_the_step_key_so_the_old_output_is_not_mistaken_for_it()
    {
        await fixture.Trained;
        var other = await fixture.PublishEmbeddingsAsync("embeddings/tiny/other", seed: 2);
        Assert.NotEqual(fixture.Embeddings.ContentSha256, other.ContentSha256);
        var sameOutput = new FineTuningJobRequest(fixture.Dataset, other, TaskKind.Rec, "runs/shared/rec");
        Assert.NotEqual(Job.StepKey(sameOutput with { Embeddings = fixture.Embeddings }), Job.StepKey(sameOutput));

        var refused = await Assert.ThrowsAsync<LsvcrException>(() => Job.RunAsync(sameOutput));
        Assert.Contains("runs/shared/rec", refused.Message);
        Assert.Contains("another step", refused.Message);
        // Options are part of the key too (but thread counts are not).
        var training = JobsFixture.Training;
        Assert.NotEqual(Job.StepKey(sameOutput with { Training = training }), Job.StepKey(sameOutput with { Training = training with { Lr = 2e-3 } }));
        Assert.Equal(Job.StepKey(sameOutput with { Training = training }), Job.StepKey(sameOutput with { Training = training with { Threads = 2, Prefetch = 5 } }));
    }

    [Fact]
    public async Task A_cancelled_fine_tuning_stops_within_a_batch_and_publishes_nothing()
    {
        using var cts = new CancellationTokenSource();
        int batchesBeforeCancel = 0, batchesAfterCancel = 0;
        var training = JobsFixture.Training with { BatchSize = 4, Epochs = 1 };
        int batchesPerEpoch = (fixture.Data[TaskKind.Rec, Split.Train].Count + 3) / 4;
        var progress = new SyncProgress(p =>
        {
            if (!p.Stage.StartsWith("train rec full epoch 1/", StringComparison.Ordinal)) return;
            if (cts.IsCancellationRequested) { batchesAfterCancel++; return; }
            if (++batchesBeforeCancel == 3) cts.Cancel();  // the third batch has just finished
        });
        var outcomes = new List<string>();
        using var meter = new MeterListener();
        meter.InstrumentPublished = (instrument, l) => { if (instrument.Meter.Name == JobTelemetry.FineTuning && instrument.Name == "lsvcr.job.runs") l.EnableMeasurementEvents(instrument); };
        meter.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var tag in tags) if (tag.Key == "outcome") lock (outcomes) outcomes.Add((string)tag.Value!);
        });
        meter.Start();

        var request = new FineTuningJobRequest(fixture.Dataset, fixture.Embeddings, TaskKind.Rec, "runs/cancelled/rec") { Training = training };
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Job.RunAsync(request, progress, cts.Token));

        Assert.True(batchesPerEpoch > 10, $"the epoch must have many batches to stop inside it (has {batchesPerEpoch})");
        Assert.Equal(3, batchesBeforeCancel);
        Assert.Equal(0, batchesAfterCancel);  // the next batch never ran
        Assert.Null(await fixture.Store.TryGetManifestAsync("runs/cancelled/rec"));
        Assert.Contains("cancelled", outcomes);
    }

    [Fact]
    public async Task A_run_leaves_a_trace_and_metrics_under_the_fine_tuning_names()
    {
        var activities = new List<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == JobTelemetry.FineTuning,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a => { lock (activities) activities.Add(a); },
        };
        ActivitySource.AddActivityListener(listener);
        var durations = new List<(double Seconds, string Outcome)>();
        using var meter = new MeterListener();
        meter.InstrumentPublished = (instrument, l) => { if (instrument.Meter.Name == JobTelemetry.FineTuning && instrument.Name == "lsvcr.job.duration") l.EnableMeasurementEvents(instrument); };
        meter.SetMeasurementEventCallback<double>((_, value, tags, _) =>
        {
            foreach (var tag in tags) if (tag.Key == "outcome") lock (durations) durations.Add((value, (string)tag.Value!));
        });
        meter.Start();

        var request = new FineTuningJobRequest(fixture.Dataset, fixture.Embeddings, TaskKind.CommRank, "runs/traced/commrank")
        {
            Training = JobsFixture.Training with { Epochs = 1 },
        };
        var result = await Job.RunAsync(request);

        var activity = Assert.Single(activities, a => (string?)a.GetTagItem("lsvcr.output_set") == "runs/traced/commrank");
        Assert.Equal(FineTuningJobService.Step, activity.OperationName);
        Assert.Equal("completed", activity.GetTagItem("lsvcr.outcome"));
        Assert.Equal(result.Job.StepKey, activity.GetTagItem("lsvcr.step_key"));
        Assert.Contains(activity.Events, e => e.Name.StartsWith("train commrank full epoch 1/1", StringComparison.Ordinal));
        var (seconds, outcome) = Assert.Single(durations);
        Assert.Equal("completed", outcome);
        Assert.True(seconds > 0 && seconds >= activity.Duration.TotalSeconds * 0.5, $"duration {seconds} s vs activity {activity.Duration.TotalSeconds} s");
        Assert.Equal("commrank", (await fixture.Store.GetManifestAsync(result.Job.Output)).Metadata["task"]);
    }

    [Fact]
    public async Task Initial_weights_given_as_a_path_are_refused()
    {
        var request = new FineTuningJobRequest(fixture.Dataset, fixture.Embeddings, TaskKind.Rec, "runs/init-path/rec")
        {
            Training = JobsFixture.Training with { Init = "/some/folder" },
        };
        var refused = await Assert.ThrowsAsync<LsvcrException>(() => Job.RunAsync(request));
        Assert.Contains("/some/folder", refused.Message);
        Assert.Contains("artifact set", refused.Message);
    }
}
