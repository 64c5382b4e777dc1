using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using LSVCR.Serving;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;

namespace LSVCR.Serving.Api;

/// <summary>The HTTP endpoints (docs/serving.md).</summary>
public static class ServingApi
{
    public const string VersionHeader = "X-Model-Version", ApiKeyHeader = "X-Api-Key";

    public static IEndpointRouteBuilder MapServingApi(this IEndpointRouteBuilder app)
    {
        var v1 = app.MapGroup("/v1");
        v1.MapPost("/recommendations/videos", RecommendVideos).WithName("RecommendVideos")
            .WithSummary("Top-k videos for a user's histories.")
            .WithDescription("Unknown history ids are dropped and listed; no usable history gives the popularity ranking (\"fallback\": \"popularity\").")
            .Accepts<VideoRecommendationRequest>("application/json")
            .Produces<VideoRecommendationResponse>().ProducesValidationProblem().ProducesProblem(413).ProducesProblem(429).ProducesProblem(503)
            .AddEndpointFilter(Timed(RecommendationEngine.VideosEndpoint));
        v1.MapPost("/recommendations/comments", RankComments).WithName("RankComments")
            .WithSummary("Ranks the watched video's comments (or the given candidates) for a user's histories.")
            .WithDescription("An unknown watched video or candidate is a 400.")
            .Accepts<CommentRankingRequest>("application/json")
            .Produces<CommentRankingResponse>().ProducesValidationProblem().ProducesProblem(413).ProducesProblem(429).ProducesProblem(503)
            .AddEndpointFilter(Timed(RecommendationEngine.CommentsEndpoint));
        v1.MapGet("/model", GetModel).WithName("GetModel").WithSummary("The loaded model version, when it was loaded and the catalogue sizes.")
            .AddEndpointFilter(Timed("model"));

        var admin = v1.MapGroup("/admin").AddEndpointFilter(RequireApiKey);
        admin.MapPost("/pin", Pin).WithName("PinModel").WithSummary("Pins a model version (loads it when needed); the watcher then stays on it.")
            .Accepts<PinRequest>("application/json").ProducesProblem(401).ProducesProblem(404);
        admin.MapDelete("/pin", Unpin).WithName("UnpinModel").WithSummary("Removes the pin: the newest bundle is served again.").ProducesProblem(401);
        admin.MapPost("/rollback", Rollback).WithName("RollbackModel").WithSummary("Pins the version that was live before the current one.")
            .ProducesProblem(401).ProducesProblem(409);
        return app;
    }

    private static Func<EndpointFilterInvocationContext, EndpointFilterDelegate, ValueTask<object?>> Timed(string endpoint) => async (ctx, next) =>
    {
        var start = Stopwatch.GetTimestamp();
        try { return await next(ctx); }
        finally
        {
            ctx.HttpContext.RequestServices.GetRequiredService<ServingMetrics>().RequestDuration.Record(
                Stopwatch.GetElapsedTime(start).TotalSeconds, new KeyValuePair<string, object?>("endpoint", endpoint));
        }
    };

    private static async Task<IResult> RecommendVideos(HttpContext http, RecommendationEngine engine, CancellationToken ct)
    {
        var read = await RequestReader.ReadAsync<VideoRecommendationRequest>(http.Request, engine.Options, ct);
        if (read.Error is not null) return read.Error;
        var (query, invalid) = RequestReader.Validate(read.Value!, engine.Options);
        if (invalid is not null) return invalid;
        return await Answer(http, engine, async () =>
        {
            var r = await engine.RecommendVideosAsync(query!);
            http.Response.Headers[VersionHeader] = r.ModelVersion;
            return TypedResults.Ok(new VideoRecommendationResponse(r.ModelVersion, [.. r.Items.Select(i => new ScoredVideo(i.Id, i.Score))],
                r.Fallback, r.UnknownVideos, r.UnknownComments));
        });
    }

    private static async Task<IResult> RankComments(HttpContext http, RecommendationEngine engine, CancellationToken ct)
    {
        var read = await RequestReader.ReadAsync<CommentRankingRequest>(http.Request, engine.Options, ct);
        if (read.Error is not null) return read.Error;
        var (query, invalid) = RequestReader.Validate(read.Value!, engine.Options);
        if (invalid is not null) return invalid;
        return await Answer(http, engine, async () =>
        {
            var r = await engine.RankCommentsAsync(query!);
            http.Response.Headers[VersionHeader] = r.ModelVersion;
            return TypedResults.Ok(new CommentRankingResponse(r.ModelVersion, [.. r.Items.Select(i => new ScoredComment(i.Id, i.Score))],
                r.Fallback, r.UnknownVideos, r.UnknownComments));
        });
    }

    /// <summary>Engine outcomes that are not answers: a 400 naming the field, 429 with Retry-After, 503 before the first model.</summary>
    private static async Task<IResult> Answer(HttpContext http, RecommendationEngine engine, Func<Task<IResult>> run)
    {
        try
        {
            return await run();
        }
        catch (InvalidQueryException e)
        {
            return RequestReader.Invalid(e.Field, e.Message);
        }
        catch (OverloadedException e)
        {
            http.Response.Headers.RetryAfter = engine.Options.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return TypedResults.Problem(statusCode: StatusCodes.Status429TooManyRequests, title: "Too many requests.",
                detail: $"{e.Message}; retry after {engine.Options.RetryAfterSeconds} s");
        }
        catch (NoModelException e)
        {
            http.Response.Headers.RetryAfter = "5";
            return TypedResults.Problem(statusCode: StatusCodes.Status503ServiceUnavailable, title: "No model loaded.", detail: e.Message);
        }
    }

    private static Results<Ok<ModelResponse>, ProblemHttpResult> GetModel(RecommendationEngine engine) =>
        engine.Status() is { } s
            ? TypedResults.Ok(new ModelResponse(s.Version, s.LoadedAt, s.LoadSeconds, s.Videos, s.Comments, s.TrainingRun, s.Pinned, s.History, s.LastError))
            : TypedResults.Problem(statusCode: StatusCodes.Status503ServiceUnavailable, title: "No model loaded.", detail: "no model is loaded yet");

    private static async Task<IResult> Pin(HttpContext http, RecommendationEngine engine, CancellationToken ct)
    {
        var read = await RequestReader.ReadAsync<PinRequest>(http.Request, engine.Options, ct);
        if (read.Error is not null) return read.Error;
        if (string.IsNullOrEmpty(read.Value!.Version)) return RequestReader.Invalid("version", "the model version to pin is required");
        var (found, swapped, error) = await engine.PinAsync(read.Value.Version, ct);
        if (!found) return TypedResults.Problem(statusCode: 404, title: "Unknown model version.", detail: $"version: no bundle under the bundle root has version {read.Value.Version}");
        if (!swapped) return TypedResults.Problem(statusCode: 409, title: "The bundle did not load.", detail: error);
        return GetModel(engine);
    }

    private static IResult Unpin(RecommendationEngine engine)
    {
        engine.Unpin();
        return GetModel(engine);
    }

    private static async Task<IResult> Rollback(RecommendationEngine engine, CancellationToken ct)
    {
        var (found, swapped, version, error) = await engine.RollbackAsync(ct);
        if (version is null) return TypedResults.Problem(statusCode: 409, title: "Nothing to roll back to.", detail: "only one model version has been live");
        if (!found) return TypedResults.Problem(statusCode: 409, title: "The previous version is gone.", detail: $"no bundle under the bundle root has version {version}");
        if (!swapped) return TypedResults.Problem(statusCode: 409, title: "The bundle did not load.", detail: error);
        return GetModel(engine);
    }

    private static async ValueTask<object?> RequireApiKey(EndpointFilterInvocationContext ctx, EndpointFilterDelegate next)
    {
        var key = ctx.HttpContext.RequestServices.GetRequiredService<IOptions<ServingOptions>>().Value.AdminApiKey;
        var given = ctx.HttpContext.Request.Headers[ApiKeyHeader].ToString();
        if (key.Length == 0 || !CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), Encoding.UTF8.GetBytes(key)))
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status401Unauthorized, title: "Unauthorized.",
                detail: key.Length == 0 ? "the admin API key is not configured (Serving:AdminApiKey)" : $"header {ApiKeyHeader} is missing or wrong");
        }
        return await next(ctx);
    }
}
