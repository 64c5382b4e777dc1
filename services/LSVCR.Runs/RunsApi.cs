using LSVCR.Contracts;
using LSVCR.Data;
using LSVCR.Orchestration.Runs;
using LSVCR.Orchestration.Sagas;
using LSVCR.Steps;
using LSVCR.Training;
using MassTransit;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LSVCR.Runs;

/// <summary>The body of <c>POST /v1/runs</c>: a dataset id or a synthetic-data spec, and the run's options.</summary>
public sealed record RunRequest(string? DatasetId, SyntheticDataSpec? Synthetic, PipelineRunOptions? Options);

public sealed record RunAccepted(Guid RunId, string Status);

/// <summary>A run as <c>GET /v1/runs/{id}</c> shows it.</summary>
public sealed record RunView(Guid RunId, string State, DateTimeOffset SubmittedAt, DateTimeOffset UpdatedAt, string? DatasetId,
    IReadOnlyList<StepView> Steps, RunArtifacts Artifacts, string? ModelVersion, string? Evaluation, string? FailedStep, string? FailureReason)
{
    public static RunView Of(PipelineRunState s) => new(s.CorrelationId, s.CurrentState, s.SubmittedAt, s.UpdatedAt, s.Dataset?.DatasetId,
        s.Steps.Select(StepView.Of).ToList(),
        new RunArtifacts(s.Dataset?.Files, s.Embeddings, s.Alignment, s.Models.ToDictionary(p => p.Key.FileStem(), p => p.Value), s.Report, s.Bundle),
        s.ModelVersion, s.EvaluationSummary, s.FailedStep, s.FailureReason);
}

public sealed record StepView(string Name, StepStatus Status, DateTimeOffset StartedAt, DateTimeOffset? FinishedAt, double? Seconds,
    string? Progress, string? Error)
{
    public static StepView Of(StepRecord s) =>
        new(s.Name, s.Status, s.StartedAt, s.FinishedAt, (s.FinishedAt - s.StartedAt)?.TotalSeconds, s.Progress, s.Error);
}

public sealed record RunArtifacts(ArtifactSetReference? Dataset, ArtifactSetReference? Embeddings, ArtifactSetReference? Alignment,
    IReadOnlyDictionary<string, ArtifactSetReference> Models, ArtifactSetReference? Report, ArtifactSetReference? Bundle);

public static class RunsApi
{
    public static IEndpointRouteBuilder MapRunsApi(this IEndpointRouteBuilder app)
    {
        var v1 = app.MapGroup("/v1").WithTags("runs");
        v1.MapPost("/datasets", UploadDataset).WithName("UploadDataset")
            .WithSummary("Upload a zipped dataset in the reference layout (body: application/zip); validated before it is stored.")
            .Accepts<Stream>("application/zip");
        v1.MapPost("/runs", StartRun).WithName("StartRun")
            .WithSummary("Start a pipeline run on an uploaded dataset or a synthetic one; 202 with the run id.");
        v1.MapGet("/runs/{id:guid}", GetRun).WithName("GetRun")
            .WithSummary("A run's state, its steps with timings, artifact references and failure reason.");
        v1.MapGet("/runs", ListRuns).WithName("ListRuns").WithSummary("Every run, newest first.");
        return app;
    }

    internal static async Task<Results<Created<DatasetReference>, ValidationProblem>> UploadDataset(HttpRequest request, DatasetIntake intake,
        CancellationToken ct)
    {
        try
        {
            var dataset = await intake.AcceptZipAsync(request.Body, ct);
            return TypedResults.Created($"/v1/datasets/{dataset.DatasetId}", dataset);
        }
        catch (DatasetValidationException e)
        {
            var errors = e.Problems.GroupBy(p => p.File).ToDictionary(g => g.Key, g => g.Select(p => p.ToString()).ToArray());
            return TypedResults.ValidationProblem(errors, title: $"The dataset has {e.Problems.Count} problem(s); nothing was stored.");
        }
    }

    internal static async Task<Results<Accepted<RunAccepted>, ValidationProblem, ProblemHttpResult>> StartRun(RunRequest body,
        DatasetIntake intake, IPublishEndpoint bus, TimeProvider clock, CancellationToken ct)
    {
        var errors = Validate(body);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        DatasetReference? dataset = null;
        if (body.DatasetId is { } datasetId && (dataset = await intake.FindAsync(datasetId, ct)) is null)
            return TypedResults.Problem($"no dataset '{datasetId}' (upload one with POST /v1/datasets)", statusCode: StatusCodes.Status404NotFound,
                title: "Unknown dataset");
        var id = Guid.NewGuid();
        await bus.Publish(new StartPipelineRun(id, dataset, body.Synthetic, body.Options ?? new PipelineRunOptions(), clock.GetUtcNow()), ct);
        return TypedResults.Accepted($"/v1/runs/{id}", new RunAccepted(id, "submitted"));
    }

    internal static async Task<Results<Ok<RunView>, NotFound>> GetRun(Guid id, TableSagaStore<PipelineRunState> runs, CancellationToken ct) =>
        await runs.LoadAsync(id, ct) is var (state, _) ? TypedResults.Ok(RunView.Of(state)) : TypedResults.NotFound();

    internal static async Task<Ok<List<RunView>>> ListRuns(TableSagaStore<PipelineRunState> runs, CancellationToken ct)
    {
        var all = await runs.ListAsync(ct).ToListAsync(ct);
        return TypedResults.Ok(all.OrderByDescending(r => r.SubmittedAt).Select(RunView.Of).ToList());
    }

    private static readonly string[] ShapeKeys = ["hidden", "heads", "layers", "mix-layers", "inner"];

    private static Dictionary<string, string[]> Validate(RunRequest body)
    {
        var errors = new Dictionary<string, string[]>();
        if ((body.DatasetId is null) == (body.Synthetic is null))
            errors["datasetId"] = ["give exactly one of datasetId and synthetic"];
        if (body.DatasetId is { } id && !DatasetIntake.IsId(id))
            errors["datasetId"] = [$"'{id}' is not a dataset id (lower-case letters, digits and '-')"];
        if (body.Synthetic is { } s)
        {
            if (s.Users < 1) errors["synthetic.users"] = [$"must be at least 1 (got {s.Users})"];
            if (s.Videos != 0 && s.Videos < 64) errors["synthetic.videos"] = [$"must be 0 (scaled with users) or at least 64 (got {s.Videos})"];
            if (s.CommentsPerVideo < 1) errors["synthetic.commentsPerVideo"] = [$"must be at least 1 (got {s.CommentsPerVideo})"];
        }
        if (body.Options is { } o)
        {
            if (o.Tasks.Count == 0) errors["options.tasks"] = ["name at least one task"];
            // The same settings type and checks as `lsvcr train --config` (the library defaults; the FineTuning host
            // applies the keys over its own configured defaults and checks again).
            if (o.FineTune.Problems(new TrainOptions()) is { Count: > 0 } problems) errors["options.fineTune"] = [.. problems];
            // With stage 1 the SR model's shape is the aligned weights' (as with `lsvcr train --init`): refuse it up front.
            if (o.Align && o.FineTune.Training.Select(p => p.Key).Where(ShapeKeys.Contains).ToList() is { Count: > 0 } shape)
                errors["options.fineTune"] = [.. errors.GetValueOrDefault("options.fineTune", []),
                    $"{string.Join(", ", shape)}: the model shape comes from the stage-1 alignment weights when \"align\" is true"];
            if (!Variants.All.Contains(o.FineTune.Variant) || !Variants.IsTrained(o.FineTune.Variant))
                errors["options.fineTune.variant"] = [$"'{o.FineTune.Variant}' is not a trained variant ({string.Join(", ", Variants.All.Where(Variants.IsTrained))})"];
            if (o.EmbeddingChunkSize < 1) errors["options.embeddingChunkSize"] = [$"must be at least 1 (got {o.EmbeddingChunkSize})"];
        }
        return errors;
    }
}
