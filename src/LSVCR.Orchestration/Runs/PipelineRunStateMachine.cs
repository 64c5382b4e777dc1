using LSVCR.Contracts;
using MassTransit;

namespace LSVCR.Orchestration.Runs;

/// <summary>
/// The pipeline run: submitted → [dataset] → embedding → [alignment] → fine-tuning (every task at once) → evaluating →
/// published | failed. The same machine runs in the Runs service (RabbitMQ, table-stored state) and in
/// <c>lsvcr pipeline</c> (in-memory transport). Commands are published: exactly one service consumes each type.
/// Events for another step key (a superseded attempt), duplicates and late events change nothing.
/// </summary>
public sealed class PipelineRunStateMachine : MassTransitStateMachine<PipelineRunState>
{
    public State PreparingData { get; private set; } = null!;
    public State Embedding { get; private set; } = null!;
    public State Aligning { get; private set; } = null!;
    public State FineTuning { get; private set; } = null!;
    public State Evaluating { get; private set; } = null!;
    public State Published { get; private set; } = null!;
    public State Failed { get; private set; } = null!;

    public Event<StartPipelineRun> Start { get; private set; } = null!;
    public Event<DatasetGenerated> DatasetReady { get; private set; } = null!;
    public Event<EmbeddingsComputed> EmbeddingsReady { get; private set; } = null!;
    public Event<AlignmentCompleted> AlignmentReady { get; private set; } = null!;
    public Event<FineTuningCompleted> TaskTrained { get; private set; } = null!;
    public Event<EvaluationCompleted> Evaluated { get; private set; } = null!;
    public Event<ModelPublished> ModelReady { get; private set; } = null!;
    public Event<StepFailed> StepGaveUp { get; private set; } = null!;
    public Event<StepProgressed> Progressed { get; private set; } = null!;
    public Event<Fault<GenerateDataset>> DatasetFaulted { get; private set; } = null!;
    public Event<Fault<ComputeEmbeddings>> EmbeddingsFaulted { get; private set; } = null!;
    public Event<Fault<ComputeEmbeddingChunk>> EmbeddingChunkFaulted { get; private set; } = null!;
    public Event<Fault<AlignPreferences>> AlignmentFaulted { get; private set; } = null!;
    public Event<Fault<FineTune>> FineTuneFaulted { get; private set; } = null!;
    public Event<Fault<Evaluate>> EvaluateFaulted { get; private set; } = null!;

    public PipelineRunStateMachine(TimeProvider? clock = null)
    {
        var time = clock ?? TimeProvider.System;
        InstanceState(x => x.CurrentState);
        Event(() => Start, e => e.CorrelateById(m => m.Message.RunId));
        Event(() => DatasetReady, e => { e.CorrelateById(m => m.Message.RunId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => EmbeddingsReady, e => { e.CorrelateById(m => m.Message.RunId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => AlignmentReady, e => { e.CorrelateById(m => m.Message.RunId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => TaskTrained, e => { e.CorrelateById(m => m.Message.RunId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => Evaluated, e => { e.CorrelateById(m => m.Message.RunId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => ModelReady, e => { e.CorrelateById(m => m.Message.RunId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => StepGaveUp, e => { e.CorrelateById(m => m.Message.RunId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => Progressed, e => { e.CorrelateById(m => m.Message.RunId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => DatasetFaulted, e => { e.CorrelateById(m => m.Message.Message.RunId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => EmbeddingsFaulted, e => { e.CorrelateById(m => m.Message.Message.RunId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => EmbeddingChunkFaulted, e => { e.CorrelateById(m => m.Message.Message.RunId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => AlignmentFaulted, e => { e.CorrelateById(m => m.Message.Message.RunId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => FineTuneFaulted, e => { e.CorrelateById(m => m.Message.Message.RunId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => EvaluateFaulted, e => { e.CorrelateById(m => m.Message.Message.RunId); e.OnMissingInstance(m => m.Discard()); });
        // Events of a run this orchestrator does not know (e.g. published by a test or after a store reset) are dropped.
        // Duplicates and late events (a second EmbeddingsComputed during fine-tuning, anything after the end) are expected
        // with at-least-once delivery: they are dropped, not faulted.
        OnUnhandledEvent(x => x.Ignore());

        Initially(When(Start).ThenAsync(async ctx =>
        {
            var run = ctx.Saga;
            run.SubmittedAt = ctx.Message.RequestedAt;
            run.Options = ctx.Message.Options;
            run.Synthetic = ctx.Message.Synthetic;
            run.Dataset = ctx.Message.Dataset;
            await ctx.Publish(new PipelineRunSubmitted(run.CorrelationId, time.GetUtcNow()));
            if (run.Dataset is null)
            {
                var spec = run.Synthetic ?? throw new LsvcrException("a run needs a dataset or a synthetic-data spec");
                await ctx.Publish(new GenerateDataset(run.CorrelationId, Begin(run, StepKeys.Dataset, time, StepKeys.Describe(spec)), spec));
            }
            else await RequestEmbeddings(ctx, run, time);
        }).IfElse(ctx => ctx.Saga.Dataset is null, g => g.TransitionTo(PreparingData), e => e.TransitionTo(Embedding)));

        During(PreparingData, When(DatasetReady, ctx => IsCurrent(ctx.Saga, StepKeys.Dataset, ctx.Message.StepKey))
            .ThenAsync(async ctx =>
            {
                Complete(ctx.Saga, StepKeys.Dataset, time);
                ctx.Saga.Dataset = ctx.Message.Dataset;
                await RequestEmbeddings(ctx, ctx.Saga, time);
            }).TransitionTo(Embedding));

        During(Embedding, When(EmbeddingsReady, ctx => IsCurrent(ctx.Saga, StepKeys.Embeddings, ctx.Message.StepKey))
            .ThenAsync(async ctx =>
            {
                Complete(ctx.Saga, StepKeys.Embeddings, time);
                ctx.Saga.Embeddings = ctx.Message.Embeddings;
                if (ctx.Saga.Options.Align) await RequestAlignment(ctx, ctx.Saga, time);
                else await RequestFineTuning(ctx, ctx.Saga, time);
            }).IfElse(ctx => ctx.Saga.Options.Align, a => a.TransitionTo(Aligning), f => f.TransitionTo(FineTuning)));

        During(Aligning, When(AlignmentReady, ctx => IsCurrent(ctx.Saga, StepKeys.Alignment, ctx.Message.StepKey))
            .ThenAsync(async ctx =>
            {
                Complete(ctx.Saga, StepKeys.Alignment, time);
                ctx.Saga.Alignment = ctx.Message.Alignment;
                ctx.Saga.Embeddings = ctx.Message.Embeddings; // items re-encoded by the aligned encoder
                await RequestFineTuning(ctx, ctx.Saga, time);
            }).TransitionTo(FineTuning));

        During(FineTuning, When(TaskTrained, ctx => IsCurrent(ctx.Saga, StepKeys.FineTuning(ctx.Message.Task), ctx.Message.StepKey))
            .Then(ctx =>
            {
                Complete(ctx.Saga, StepKeys.FineTuning(ctx.Message.Task), time);
                ctx.Saga.Models[ctx.Message.Task] = ctx.Message.Model;
            })
            .If(ctx => ctx.Saga.Options.Tasks.All(ctx.Saga.Models.ContainsKey), all => all
                .ThenAsync(ctx => RequestEvaluation(ctx, ctx.Saga, time))
                .TransitionTo(Evaluating)));

        During(Evaluating,
            When(Evaluated, ctx => IsCurrent(ctx.Saga, StepKeys.Evaluation, ctx.Message.StepKey) && ctx.Message.Passed)
                .Then(ctx => { ctx.Saga.Report = ctx.Message.Report; ctx.Saga.EvaluationSummary = ctx.Message.Summary; }),
            When(Evaluated, ctx => IsCurrent(ctx.Saga, StepKeys.Evaluation, ctx.Message.StepKey) && !ctx.Message.Passed)
                .Then(ctx => { ctx.Saga.Report = ctx.Message.Report; ctx.Saga.EvaluationSummary = ctx.Message.Summary; })
                .ThenAsync(ctx => Fail(ctx, ctx.Saga, StepKeys.Evaluation, $"quality gate: {ctx.Message.Summary}", time))
                .TransitionTo(Failed),
            When(ModelReady).Then(ctx =>
            {
                Complete(ctx.Saga, StepKeys.Evaluation, time);
                ctx.Saga.Bundle = ctx.Message.Bundle;
                ctx.Saga.Report ??= ctx.Message.Report;
                ctx.Saga.ModelVersion = ctx.Message.ModelVersion;
            }).TransitionTo(Published));

        DuringAny(When(Progressed, ctx => ctx.Saga.Steps.Any(s => s.Key == ctx.Message.StepKey && s.Status == StepStatus.Running))
            .Then(ctx =>
            {
                var m = ctx.Message;
                ctx.Saga.Steps.First(s => s.Key == m.StepKey).Progress = $"{m.Stage} {m.Done}/{m.Total}{(m.Detail is null ? "" : ", " + m.Detail)}";
                ctx.Saga.UpdatedAt = time.GetUtcNow();
            }));

        During([PreparingData, Embedding, Aligning, FineTuning, Evaluating],
            When(StepGaveUp, ctx => ctx.Saga.Steps.Any(s => s.Key == ctx.Message.StepKey))
                .ThenAsync(ctx => Fail(ctx, ctx.Saga, ctx.Message.Step, ctx.Message.Reason, time)).TransitionTo(Failed),
            When(DatasetFaulted).ThenAsync(ctx => Fail(ctx, ctx.Saga, StepKeys.Dataset, Reason(ctx.Message), time)).TransitionTo(Failed),
            When(EmbeddingsFaulted).ThenAsync(ctx => Fail(ctx, ctx.Saga, StepKeys.Embeddings, Reason(ctx.Message), time)).TransitionTo(Failed),
            When(EmbeddingChunkFaulted, ctx => IsCurrent(ctx.Saga, StepKeys.Embeddings, ctx.Message.Message.StepKey))
                .ThenAsync(ctx => Fail(ctx, ctx.Saga, StepKeys.Embeddings, $"chunk {ctx.Message.Message.Chunk + 1}/{ctx.Message.Message.Chunks}: {Reason(ctx.Message)}", time))
                .TransitionTo(Failed),
            When(AlignmentFaulted).ThenAsync(ctx => Fail(ctx, ctx.Saga, StepKeys.Alignment, Reason(ctx.Message), time)).TransitionTo(Failed),
            When(FineTuneFaulted).ThenAsync(ctx => Fail(ctx, ctx.Saga, StepKeys.FineTuning(ctx.Message.Message.Task), Reason(ctx.Message), time))
                .TransitionTo(Failed),
            When(EvaluateFaulted).ThenAsync(ctx => Fail(ctx, ctx.Saga, StepKeys.Evaluation, Reason(ctx.Message), time)).TransitionTo(Failed));
    }

    private static async Task RequestEmbeddings(ConsumeContext ctx, PipelineRunState run, TimeProvider time)
    {
        var dataset = run.Dataset!;
        var key = Begin(run, StepKeys.Embeddings, time, dataset.Files.ContentSha256, run.Options.Encoder, run.Options.EmbeddingChunkSize.ToString());
        await ctx.Publish(new ComputeEmbeddings(run.CorrelationId, key, dataset, run.Options));
    }

    private static async Task RequestAlignment(ConsumeContext ctx, PipelineRunState run, TimeProvider time)
    {
        var key = Begin(run, StepKeys.Alignment, time, run.Dataset!.Files.ContentSha256, run.Embeddings!.ContentSha256);
        await ctx.Publish(new AlignPreferences(run.CorrelationId, key, run.Dataset, run.Embeddings, run.Options));
    }

    private static async Task RequestFineTuning(ConsumeContext ctx, PipelineRunState run, TimeProvider time)
    {
        foreach (var task in run.Options.Tasks)
        {
            var key = Begin(run, StepKeys.FineTuning(task), time, run.Dataset!.Files.ContentSha256, run.Embeddings!.ContentSha256,
                run.Alignment?.ContentSha256, StepKeys.Describe(run.Options.FineTune));
            await ctx.Publish(new FineTune(run.CorrelationId, key, task, run.Dataset, run.Embeddings, run.Alignment, run.Options));
        }
    }

    private static async Task RequestEvaluation(ConsumeContext ctx, PipelineRunState run, TimeProvider time)
    {
        var models = run.Options.Tasks.ToDictionary(t => t, t => run.Models[t]);
        var key = Begin(run, StepKeys.Evaluation, time, run.Dataset!.Files.ContentSha256, run.Embeddings!.ContentSha256,
            string.Join(",", models.Values.Select(m => m.ContentSha256)), StepKeys.Describe(run.Options.Gate));
        await ctx.Publish(new Evaluate(run.CorrelationId, key, run.Dataset, run.Embeddings, models, run.Options));
    }

    /// <summary>Records that a step was asked for and returns its key.</summary>
    private static string Begin(PipelineRunState run, string step, TimeProvider time, params string?[] inputs)
    {
        var key = StepKeys.For(run.CorrelationId, step, inputs);
        run.Steps.RemoveAll(s => s.Name == step);
        run.Steps.Add(new StepRecord { Name = step, Key = key, Status = StepStatus.Running, StartedAt = time.GetUtcNow() });
        run.UpdatedAt = time.GetUtcNow();
        return key;
    }

    private static bool IsCurrent(PipelineRunState run, string step, string key) =>
        run.Step(step) is { Status: StepStatus.Running } s && s.Key == key;

    private static void Complete(PipelineRunState run, string step, TimeProvider time)
    {
        if (run.Step(step) is { } s && s.Status == StepStatus.Running)
        {
            s.Status = StepStatus.Completed;
            s.FinishedAt = time.GetUtcNow();
            s.Progress = null;
        }
        run.UpdatedAt = time.GetUtcNow();
    }

    private static async Task Fail(ConsumeContext ctx, PipelineRunState run, string step, string reason, TimeProvider time)
    {
        if (run.Step(step) is { } s)
        {
            s.Status = StepStatus.Failed;
            s.FinishedAt = time.GetUtcNow();
            s.Error = reason;
        }
        run.FailedStep = step;
        run.FailureReason = reason;
        run.UpdatedAt = time.GetUtcNow();
        await ctx.Publish(new PipelineRunFailed(run.CorrelationId, step, reason, time.GetUtcNow()));
    }

    private static string Reason<T>(Fault<T> fault) =>
        fault.Exceptions.FirstOrDefault() is { } e ? $"{e.ExceptionType}: {e.Message}" : "the step faulted";
}
