using System.Text.Json;
using LSVCR.Data;

namespace LSVCR.Training.Tests;

[Collection(TorchCollection.Name)]
public class FineTunerTests
{
    private static readonly LsvcrDataset Data = SyntheticDataset.Generate(new SynthOptions { Users = 40, Seed = 3, Topics = 4, MinLikes = 5, MaxLikes = 8, Videos = 64 });
    private static readonly (FloatMatrix Photos, FloatMatrix Comments) Emb = HashedText.Embed(Data.Catalog, 32);
    private static readonly TrainOptions Options = new() { Epochs = 3, BatchSize = 64, Patience = 5, Seed = 5 };

    private static Task<TrainResult> Train(string dir, TrainOptions options, TaskKind task = TaskKind.Rec, IProgress<JobProgress>? progress = null, CancellationToken ct = default) =>
        FineTuner.RunAsync(Data, Emb.Photos, Emb.Comments, task, Variants.Full, dir, options, progress: progress, ct: ct);

    [Fact]
    public async Task A_run_cancelled_after_epoch_1_resumes_to_the_same_result_as_an_uninterrupted_run()
    {
        using var dir = new TestDir();
        var straight = await Train(dir.Sub("a"), Options);

        using var cts = new CancellationTokenSource();
        var cancelAfterEpoch1 = new SyncProgress(p => { if (p.Stage == "train rec full" && p.Done == 1) cts.Cancel(); });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Train(dir.Sub("b"), Options, progress: cancelAfterEpoch1, ct: cts.Token));
        var partial = JsonSerializer.Deserialize<RunHistory>(File.ReadAllText(Path.Combine(dir.Sub("b"), FineTuner.HistoryFile)))!;
        Assert.Single(partial.Epochs);

        var resumed = await Train(dir.Sub("b"), Options);
        Assert.Equal(1, resumed.ResumedAfterEpoch);
        Assert.Equal(3, resumed.EpochsRun);
        Assert.Equal(straight.History.Select(e => e.Epoch), resumed.History.Select(e => e.Epoch));
        // Same trajectory: every epoch's losses and validation metrics match the uninterrupted run.
        foreach (var (a, b) in straight.History.Zip(resumed.History))
        {
            Assert.Equal(a.Loss, b.Loss, 6);
            Assert.Equal(a.IdTextLoss, b.IdTextLoss, 6);
            Assert.Equal(a.Validation["ndcg@5"], b.Validation["ndcg@5"], 6);
        }
        Assert.Equal(straight.BestEpoch, resumed.BestEpoch);
        Assert.True(straight.History[2].Loss < straight.History[0].Loss, "training should lower the loss");
    }

    /// <summary>§4: every random number of a run comes from its own generators. Two seeded runs trained at the same
    /// time in one process — while a third thread keeps reseeding and drawing from libtorch's global generator — give
    /// bit for bit the losses and validation metrics each gives alone. On both backends (the plain modules draw their
    /// dropout masks from the run's generator as the CPU kernels do), sharded and unsharded.</summary>
    [Theory]
    [InlineData(true, 2)]
    [InlineData(false, 2)]
    [InlineData(false, 1)]
    public async Task Two_runs_interleaved_in_one_process_give_the_results_each_gives_alone(bool cpuKernels, int shards)
    {
        using var dir = new TestDir();
        var common = Options with { Epochs = 2, CpuKernels = cpuKernels, Shards = shards };
        var (optionsA, optionsB) = (common, common with { Seed = 9, Lr = 2e-3 });
        var soloA = await Train(dir.Sub("solo-a"), optionsA);
        var soloB = await Train(dir.Sub("solo-b"), optionsB, TaskKind.CommRank);

        using var stop = new CancellationTokenSource();
        var draws = 0;
        var noise = Task.Factory.StartNew(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                TorchSharp.torch.manual_seed(draws++);
                using var x = TorchSharp.torch.rand(64);
            }
        }, TaskCreationOptions.LongRunning);
        var (a, b) = (Train(dir.Sub("a"), optionsA), Train(dir.Sub("b"), optionsB, TaskKind.CommRank));
        var both = await Task.WhenAll(a, b);
        stop.Cancel();
        await noise;

        Assert.True(draws > 0);
        foreach (var (solo, together) in new[] { (soloA, both[0]), (soloB, both[1]) })
        {
            Assert.Equal(2, together.History.Count);
            foreach (var (x, y) in solo.History.Zip(together.History))
            {
                Assert.Equal(x.Loss, y.Loss);
                Assert.Equal(x.TaskLoss, y.TaskLoss);
                Assert.Equal(x.IdTextLoss, y.IdTextLoss);
                Assert.Equal(x.Validation, y.Validation);
            }
            Assert.Equal(solo.BestEpoch, together.BestEpoch);
        }
        Assert.NotEqual(soloA.History[0].Loss, soloB.History[0].Loss);
    }

    [Fact]
    public async Task Finished_runs_are_not_retrained_and_changed_settings_are_refused()
    {
        using var dir = new TestDir();
        var first = await Train(dir.Path, Options with { Epochs = 1 });
        var again = await Train(dir.Path, Options with { Epochs = 1 });
        Assert.Equal(1, again.ResumedAfterEpoch);
        Assert.Equal(JsonSerializer.Serialize(first.History), JsonSerializer.Serialize(again.History));
        var e = await Assert.ThrowsAsync<LsvcrException>(() => Train(dir.Path, Options with { Epochs = 1, Lr = 0.01 }));
        Assert.Contains("holds a run with different settings (Lr: 0.001 → 0.01);", e.Message);
        // The slice count changes the dropout masks and the rounding, so it is a setting of the run too.
        e = await Assert.ThrowsAsync<LsvcrException>(() => Train(dir.Path, Options with { Epochs = 1, Shards = 1 }));
        Assert.Contains("holds a run with different settings (Shards: 2 → 1);", e.Message);
        e = await Assert.ThrowsAsync<LsvcrException>(() => Train(dir.Path, Options with { Epochs = 1, Shards = 0 }));
        Assert.Contains("shards must be at least 1 (got 0)", e.Message);
    }

    /// <summary>§4: resume decisions are keyed by the contents a run reads. Rerunning a finished run into the same
    /// folder with other embeddings of the same width (same shapes, same counts) trains again from scratch instead of
    /// reporting "already finished"; rerunning with the same contents is still reused.</summary>
    [Fact]
    public async Task A_finished_run_rerun_with_different_embeddings_of_the_same_width_retrains()
    {
        using var dir = new TestDir();
        var first = await Train(dir.Path, Options with { Epochs = 1 });
        var other = new FloatMatrix([.. Emb.Photos.Data.Select((v, i) => i % 3 == 0 ? -v : v)], Emb.Photos.Rows, Emb.Photos.Cols);
        var stages = new List<JobProgress>();
        var again = await FineTuner.RunAsync(Data, other, Emb.Comments, TaskKind.Rec, Variants.Full, dir.Path, Options with { Epochs = 1 },
            progress: new SyncProgress(stages.Add));
        Assert.Equal(0, again.ResumedAfterEpoch);
        Assert.DoesNotContain(stages, p => p.Detail == "already finished");
        Assert.Contains(stages, p => p.Detail?.Contains("inputs changed", StringComparison.Ordinal) == true);
        Assert.Contains(stages, p => p.Stage.Contains("epoch 1/1", StringComparison.Ordinal));
        Assert.NotEqual(first.History[0].Loss, again.History[0].Loss);

        stages.Clear();
        var reused = await FineTuner.RunAsync(Data, other, Emb.Comments, TaskKind.Rec, Variants.Full, dir.Path, Options with { Epochs = 1 },
            progress: new SyncProgress(stages.Add));
        Assert.Equal(1, reused.ResumedAfterEpoch);
        Assert.Contains(stages, p => p.Detail == "already finished");
        Assert.Equal(again.History[0].Loss, reused.History[0].Loss);
    }

    [Fact]
    public async Task Best_checkpoint_reloads_to_the_validation_score_it_was_kept_for()
    {
        using var dir = new TestDir();
        var result = await Train(dir.Path, Options with { Epochs = 2 }, TaskKind.CommRank);
        var (model, info) = ModelStore.Load(dir.Path, Emb.Photos, Emb.Comments);   // the run folder resolves to best/
        using (model)
        {
            Assert.Equal(("commrank", "full", result.BestEpoch), (info.Task, info.Variant, info.Epoch));
            var val = Evaluator.Evaluate(new ModelScorer(model), Data, TaskKind.CommRank, Split.Val, null, new EvalOptions { Ks = [5, 10] });
            Assert.Equal(result.BestValNdcg5, val["ndcg@5"], 9);
            Assert.Equal(result.History[result.BestEpoch - 1].Validation["ndcg@5"], val["ndcg@5"], 9);
        }
        Assert.True(File.Exists(Path.Combine(dir.Path, FineTuner.LastDir, "optimizer.bin")));
    }

    [Fact]
    public async Task Training_stops_after_patience_epochs_without_improvement()
    {
        using var dir = new TestDir();
        // A learning rate far below float32 resolution leaves the weights unchanged, so validation never improves.
        var result = await Train(dir.Path, Options with { Epochs = 10, Patience = 2, Lr = 1e-15 });
        Assert.True(result.StoppedEarly);
        Assert.Equal(3, result.EpochsRun);
        Assert.Equal(1, result.BestEpoch);
    }

    [Fact]
    public async Task Embeddings_not_matching_the_catalogue_are_a_clear_error()
    {
        using var dir = new TestDir();
        var bad = new FloatMatrix(new float[3 * 32], 3, 32);
        var e = await Assert.ThrowsAsync<LsvcrException>(() =>
            FineTuner.RunAsync(Data, bad, Emb.Comments, TaskKind.Rec, Variants.Full, dir.Path, Options));
        Assert.Contains($"3 rows but the catalogue has {Data.Catalog.PhotoCount} videos", e.Message);
    }
}

[Collection(TorchCollection.Name)]
public class ExperimentRerunTests
{
    [Fact]
    public async Task Rerunning_an_experiment_reuses_finished_runs_and_writes_both_reports()
    {
        var data = SyntheticDataset.Generate(new SynthOptions { Users = 30, Seed = 4, Topics = 4, MinLikes = 5, MaxLikes = 7, Videos = 64 });
        var (photos, comments) = HashedText.Embed(data.Catalog, 16);
        using var dir = new TestDir();
        var options = new ExperimentOptions
        {
            OutDir = dir.Path, Variants = [Variants.NoComments, Variants.Popularity], Tasks = [TaskKind.CommRank],
            Training = new TrainOptions { Epochs = 1, BatchSize = 64, Seed = 2 },
        };
        var first = await ExperimentRunner.RunAsync(data, photos, comments, options);
        var metricsFile = Path.Combine(dir.Path, "commrank", Variants.NoComments, ExperimentRunner.TestMetricsFile);
        var stamp = File.GetLastWriteTimeUtc(metricsFile);
        var stages = new List<string>();
        var second = await ExperimentRunner.RunAsync(data, photos, comments, options, new SyncProgress(p => stages.Add(p.Stage)));

        Assert.Equal(first.ToJson(), second.ToJson());
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(metricsFile));            // test metrics reused, not recomputed
        Assert.DoesNotContain(stages, s => s.Contains("epoch", StringComparison.Ordinal));   // nothing retrained
        Assert.Equal(["no-comments", "popularity"], second.Rows.Select(r => r.Variant));
        var md = File.ReadAllText(Path.Combine(dir.Path, ExperimentRunner.ReportMarkdown));
        Assert.Contains("## commrank — video-comments", md);
        Assert.Contains("- **no-comments**: Full model, but every comment history is emptied", md);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.Path, ExperimentRunner.ReportJson)));
        Assert.Equal(2, json.RootElement.GetProperty("rows").GetArrayLength());
    }
}
