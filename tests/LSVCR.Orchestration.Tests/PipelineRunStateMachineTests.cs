using Azure.Data.Tables;
using LSVCR.Contracts;
using LSVCR.Orchestration.Runs;
using LSVCR.Orchestration.Sagas;
using MassTransit;
using MassTransit.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace LSVCR.Orchestration.Tests;

/// <summary>The pipeline-run state machine on MassTransit's in-memory test harness; the test plays the workers.</summary>
[Collection(AzuriteCollection.Name)]
public sealed class PipelineRunStateMachineTests(AzuriteFixture azurite)
{
    private static readonly DatasetReference Dataset = new("ds1", Set("datasets/ds1"));

    private static ArtifactSetReference Set(string set) => new("local", set, "sha-" + set.Replace('/', '-'), 3, 100);

    private static StartPipelineRun StartWithDataset(Guid id) =>
        new(id, Dataset, null, new PipelineRunOptions(), DateTimeOffset.UtcNow);

    [Fact]
    public async Task Happy_path_runs_every_step_in_order_and_ends_published()
    {
        await using var run = await Orchestrator.StartAsync();
        var id = Guid.NewGuid();
        await run.Harness.Bus.Publish(StartWithDataset(id));

        var embed = await run.Single<ComputeEmbeddings>(id);
        Assert.Equal("ds1", embed.Dataset.DatasetId);
        Assert.StartsWith("embeddings-", embed.StepKey);
        Assert.Single(run.Published<PipelineRunSubmitted>(id));
        await run.Harness.Bus.Publish(new EmbeddingsComputed(id, embed.StepKey, Set("embeddings/ds1/minilm")));

        var fineTunes = await run.All<FineTune>(id, 2);
        Assert.Equal([TaskKind.Rec, TaskKind.CommRank], fineTunes.Select(f => f.Task));
        Assert.All(fineTunes, f => Assert.Equal("embeddings/ds1/minilm", f.Embeddings.Set));
        Assert.NotEqual(fineTunes[0].StepKey, fineTunes[1].StepKey);
        foreach (var f in fineTunes)
            await run.Harness.Bus.Publish(new FineTuningCompleted(id, f.StepKey, f.Task, Set($"runs/{id:N}/{f.Task}")));

        var evaluate = await run.Single<Evaluate>(id);
        Assert.Equal($"runs/{id:N}/Rec", evaluate.Models[TaskKind.Rec].Set);
        Assert.Equal($"runs/{id:N}/CommRank", evaluate.Models[TaskKind.CommRank].Set);
        await run.Harness.Bus.Publish(new EvaluationCompleted(id, evaluate.StepKey, Set($"runs/{id:N}/report"), true, "beats popularity"));
        await run.Harness.Bus.Publish(new ModelPublished(id, "v1", Set($"runs/{id:N}/bundle"), Set($"runs/{id:N}/report"), DateTimeOffset.UtcNow));

        var state = await run.WaitForState(id, m => m.Published);
        Assert.Equal("v1", state.ModelVersion);
        Assert.Equal($"runs/{id:N}/bundle", state.Bundle!.Set);
        Assert.Equal(["embeddings", "fine-tuning-rec", "fine-tuning-comm_rank", "evaluation"], state.Steps.Select(s => s.Name));
        Assert.All(state.Steps, s => Assert.Equal(StepStatus.Completed, s.Status));
        Assert.Empty(run.Published<PipelineRunFailed>(id));
    }

    [Fact]
    public async Task Run_without_a_dataset_generates_the_synthetic_one_first()
    {
        await using var run = await Orchestrator.StartAsync();
        var id = Guid.NewGuid();
        var spec = new SyntheticDataSpec(40, 80, 7);
        await run.Harness.Bus.Publish(new StartPipelineRun(id, null, spec, new PipelineRunOptions(), DateTimeOffset.UtcNow));

        var generate = await run.Single<GenerateDataset>(id);
        Assert.Equal(spec, generate.Spec);
        Assert.Empty(run.Published<ComputeEmbeddings>(id));
        await run.Harness.Bus.Publish(new DatasetGenerated(id, generate.StepKey, Dataset));
        Assert.Equal("ds1", (await run.Single<ComputeEmbeddings>(id)).Dataset.DatasetId);
        Assert.Equal(nameof(PipelineRunStateMachine.Embedding), (await run.Load(id)).CurrentState);
    }

    [Fact]
    public async Task Failed_step_fails_the_run_with_its_reason_and_later_results_change_nothing()
    {
        await using var run = await Orchestrator.StartAsync();
        var id = Guid.NewGuid();
        var fineTunes = await run.ToFineTuning(id);

        await run.Harness.Bus.Publish(new StepFailed(id, fineTunes[1].StepKey, StepKeys.FineTuning(TaskKind.CommRank), ErrorKind.BadInput,
            "comm_rank.train.json: no examples"));
        var state = await run.WaitForState(id, m => m.Failed);
        Assert.Equal("fine-tuning-comm_rank", state.FailedStep);
        Assert.Equal("comm_rank.train.json: no examples", state.FailureReason);
        var failed = await run.Single<PipelineRunFailed>(id);
        Assert.Equal("fine-tuning-comm_rank", failed.Step);
        Assert.Equal("comm_rank.train.json: no examples", failed.Reason);

        await run.Harness.Bus.Publish(new FineTuningCompleted(id, fineTunes[0].StepKey, TaskKind.Rec, Set("rec")));
        await run.Harness.Bus.Publish(new FineTuningCompleted(id, fineTunes[1].StepKey, TaskKind.CommRank, Set("cr")));
        await run.Processed<FineTuningCompleted>(id, 2);
        Assert.Empty(run.Published<Evaluate>(id));
        Assert.Equal(nameof(PipelineRunStateMachine.Failed), (await run.Load(id)).CurrentState);
    }

    [Fact]
    public async Task Fault_after_retries_and_a_failed_quality_gate_fail_the_run()
    {
        // A worker whose step throws: MassTransit publishes Fault<ComputeEmbeddings> once its retries are exhausted.
        await using var run = await Orchestrator.StartAsync(workers: x => x.AddConsumer<DiskFullEmbeddings>());
        var id = Guid.NewGuid();
        await run.Harness.Bus.Publish(StartWithDataset(id));
        var failed = await run.WaitForState(id, m => m.Failed);
        Assert.Equal("embeddings", failed.FailedStep);
        Assert.Equal("System.IO.IOException: disk full", failed.FailureReason);

        await using var gate = await Orchestrator.StartAsync();
        var gated = Guid.NewGuid();
        var fineTunes = await gate.ToFineTuning(gated);
        foreach (var f in fineTunes) await gate.Harness.Bus.Publish(new FineTuningCompleted(gated, f.StepKey, f.Task, Set($"m/{f.Task}")));
        var evaluate = await gate.Single<Evaluate>(gated);
        await gate.Harness.Bus.Publish(new EvaluationCompleted(gated, evaluate.StepKey, Set("report"), false,
            "Rec ndcg@10 0.10 does not beat popularity 0.14"));
        var gatedState = await gate.WaitForState(gated, m => m.Failed);
        Assert.Equal("evaluation", gatedState.FailedStep);
        Assert.Equal("quality gate: Rec ndcg@10 0.10 does not beat popularity 0.14", gatedState.FailureReason);
        Assert.Equal("report", gatedState.Report!.Set);
    }

    [Fact]
    public async Task Duplicate_stale_and_out_of_order_events_are_applied_once()
    {
        await using var run = await Orchestrator.StartAsync();
        var id = Guid.NewGuid();
        await run.Harness.Bus.Publish(StartWithDataset(id));
        await run.Harness.Bus.Publish(StartWithDataset(id)); // a redelivered start
        var embed = await run.Single<ComputeEmbeddings>(id);
        await run.Harness.Bus.Publish(new EmbeddingsComputed(id, embed.StepKey, Set("emb")));
        var fineTunes = await run.All<FineTune>(id, 2);
        await run.Harness.Bus.Publish(new EmbeddingsComputed(id, embed.StepKey, Set("emb"))); // duplicate after the step moved on

        // CommRank finishes first; Rec's result arrives twice, once with the key of a superseded attempt.
        await run.Harness.Bus.Publish(new FineTuningCompleted(id, fineTunes[1].StepKey, TaskKind.CommRank, Set("cr")));
        await run.Harness.Bus.Publish(new FineTuningCompleted(id, "fine-tuning-rec-0000000000000000", TaskKind.Rec, Set("stale")));
        await run.Processed<FineTuningCompleted>(id, 2);
        Assert.Empty(run.Published<Evaluate>(id));
        await run.Harness.Bus.Publish(new FineTuningCompleted(id, fineTunes[0].StepKey, TaskKind.Rec, Set("rec")));
        await run.Harness.Bus.Publish(new FineTuningCompleted(id, fineTunes[0].StepKey, TaskKind.Rec, Set("rec")));
        var evaluate = await run.Single<Evaluate>(id);
        Assert.Equal("rec", evaluate.Models[TaskKind.Rec].Set);

        // ModelPublished may overtake EvaluationCompleted (two messages, two queues).
        await run.Harness.Bus.Publish(new ModelPublished(id, "v7", Set("bundle"), Set("report"), DateTimeOffset.UtcNow));
        await run.WaitForState(id, m => m.Published);
        await run.Harness.Bus.Publish(new EvaluationCompleted(id, evaluate.StepKey, Set("report"), true, "ok"));
        await run.Processed<EvaluationCompleted>(id, 1);
        await run.Processed<StartPipelineRun>(id, 2);
        await run.Processed<EmbeddingsComputed>(id, 2);
        await run.Processed<FineTuningCompleted>(id, 4);

        Assert.Single(run.Published<PipelineRunSubmitted>(id));
        Assert.Single(run.Published<ComputeEmbeddings>(id));
        Assert.Equal(2, run.Published<FineTune>(id).Count);
        Assert.Single(run.Published<Evaluate>(id));
        var state = await run.Load(id);
        Assert.Equal(nameof(PipelineRunStateMachine.Published), state.CurrentState);
        Assert.Equal("v7", state.ModelVersion);
        Assert.Empty(run.Harness.Published.Select<Fault>().ToList());
    }

    [Fact]
    public async Task Orchestrator_restart_mid_run_reloads_the_state_from_the_table()
    {
        var table = azurite.NewTable();
        var id = Guid.NewGuid();
        IReadOnlyList<FineTune> fineTunes;
        await using (var first = await Orchestrator.StartAsync(table))
            fineTunes = await first.ToFineTuning(id);

        // A new process: a new store over the same table, nothing in memory.
        await using var second = await Orchestrator.StartAsync(table);
        Assert.Equal(nameof(PipelineRunStateMachine.FineTuning), (await second.Load(id)).CurrentState);
        foreach (var f in fineTunes)
            await second.Harness.Bus.Publish(new FineTuningCompleted(id, f.StepKey, f.Task, Set($"m/{f.Task}")));
        var evaluate = await second.Single<Evaluate>(id);
        Assert.Equal(["m/Rec", "m/CommRank"], evaluate.Models.Values.Select(m => m.Set));
        Assert.Equal("emb", evaluate.Embeddings.Set);
        var state = await second.Load(id);
        Assert.Equal(nameof(PipelineRunStateMachine.Evaluating), state.CurrentState);
        Assert.Equal(StepStatus.Completed, state.Step("embeddings")!.Status);
    }

    private sealed class DiskFullEmbeddings : IConsumer<ComputeEmbeddings>
    {
        public Task Consume(ConsumeContext<ComputeEmbeddings> context) => throw new IOException("disk full");
    }

    /// <summary>
    /// A harness with the state machine; state in memory or, with a table, in the table store. Waits poll the harness's
    /// message lists (its inactivity signal fires once per harness, so it cannot mark the end of each step).
    /// </summary>
    private sealed class Orchestrator : IAsyncDisposable
    {
        private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
        private readonly ServiceProvider provider;
        private readonly TableSagaStore<PipelineRunState>? store;

        private Orchestrator(ServiceProvider provider, TableSagaStore<PipelineRunState>? store)
        {
            this.provider = provider;
            this.store = store;
            Harness = provider.GetRequiredService<ITestHarness>();
        }

        public ITestHarness Harness { get; }
        private ISagaStateMachineTestHarness<PipelineRunStateMachine, PipelineRunState> Saga =>
            Harness.GetSagaStateMachineHarness<PipelineRunStateMachine, PipelineRunState>();

        public static async Task<Orchestrator> StartAsync(TableClient? table = null, Action<IBusRegistrationConfigurator>? workers = null)
        {
            var services = new ServiceCollection();
            var store = table is null ? null : new TableSagaStore<PipelineRunState>(table, s => s.CurrentState);
            if (store is not null) services.AddSingleton(store);
            services.AddMassTransitTestHarness(x =>
            {
                x.AddPipelineRuns(durable: store is not null);
                workers?.Invoke(x);
            });
            var orchestrator = new Orchestrator(services.BuildServiceProvider(true), store);
            await orchestrator.Harness.Start();
            return orchestrator;
        }

        public async Task<IReadOnlyList<FineTune>> ToFineTuning(Guid id)
        {
            await Harness.Bus.Publish(StartWithDataset(id));
            var embed = await Single<ComputeEmbeddings>(id);
            await Harness.Bus.Publish(new EmbeddingsComputed(id, embed.StepKey, Set("emb")));
            var fineTunes = await All<FineTune>(id, 2);
            await WaitForState(id, m => m.FineTuning);
            return fineTunes;
        }

        /// <summary>The messages of type T the run published so far.</summary>
        public List<T> Published<T>(Guid id) where T : class =>
            Harness.Published.Select<T>(x => RunId(x.Context.Message) == id).Select(x => x.Context.Message).ToList();

        public async Task<T> Single<T>(Guid id) where T : class => (await All<T>(id, 1)).Single();

        /// <summary>Waits until the run has published <paramref name="count"/> messages of type T.</summary>
        public async Task<IReadOnlyList<T>> All<T>(Guid id, int count) where T : class
        {
            await Until(() => Published<T>(id).Count >= count, $"{count} {typeof(T).Name}");
            return Published<T>(id);
        }

        /// <summary>Waits until the state machine has consumed <paramref name="count"/> messages of type T of the run.</summary>
        public Task Processed<T>(Guid id, int count) where T : class =>
            Until(() => Saga.Consumed.Select<T>(x => RunId(x.Context.Message) == id).Count() >= count, $"{count} {typeof(T).Name} consumed");

        public async Task<PipelineRunState> WaitForState(Guid id, Func<PipelineRunStateMachine, State> state)
        {
            var name = state(Saga.StateMachine).Name;
            PipelineRunState? current = null;
            await Until(async () => (current = await Find(id))?.CurrentState == name, $"state {name}");
            return current!;
        }

        public async Task<PipelineRunState> Load(Guid id) => await Find(id) ?? throw new InvalidOperationException($"no run {id}");

        private async Task<PipelineRunState?> Find(Guid id) =>
            store is not null ? (await store.LoadAsync(id))?.Instance : Saga.Sagas.Contains(id);

        private static Task Until(Func<bool> condition, string what) => Until(() => Task.FromResult(condition()), what);

        private static async Task Until(Func<Task<bool>> condition, string what)
        {
            var deadline = DateTime.UtcNow + Timeout;
            while (!await condition())
            {
                if (DateTime.UtcNow > deadline) throw new TimeoutException($"waited {Timeout.TotalSeconds} s for {what}");
                await Task.Delay(20);
            }
        }

        private static Guid RunId(object message) => message switch
        {
            Fault f => RunId(f.GetType().GetProperty("Message")!.GetValue(f)!),
            _ => (Guid)message.GetType().GetProperty("RunId")!.GetValue(message)!,
        };

        public async ValueTask DisposeAsync()
        {
            await Harness.Stop();
            await provider.DisposeAsync();
        }
    }
}
