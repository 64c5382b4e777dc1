using LSVCR.Serving;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace LSVCR.Serving.Api;

public static class ServingServices
{
    /// <summary>Options (validated at start), the engine, the bundle watcher, the store pointer poll and the ModelPublished consumer when configured, health checks, OpenAPI, problem details, OpenTelemetry.</summary>
    public static WebApplicationBuilder AddServingServices(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<ServingOptions>().BindConfiguration(ServingOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<ServingMetrics>();
        services.AddSingleton<RecommendationEngine>();
        services.AddHostedService<BundleWatcher>();
        services.AddPublishedBundles(builder.Configuration);
        services.AddProblemDetails();
        services.AddOpenApi(o => o.AddOperationTransformer(OpenApiExamples.Apply));
        services.AddHealthChecks()
            .AddCheck<ModelReadyCheck>("model", tags: ["ready"])
            .AddCheck("self", () => HealthCheckResult.Healthy(), tags: ["live"]);
        // Kestrel's own cap stays above the service's, so an oversized body is answered by RequestReader with a 413 problem.
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = null);

        var otel = services.AddOpenTelemetry()
            .WithMetrics(m => m.AddMeter(ServingMetrics.MeterName).AddAspNetCoreInstrumentation())
            .WithTracing(t => t.AddAspNetCoreInstrumentation());
        if (!string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"])) otel.UseOtlpExporter();
        return builder;
    }

    public static WebApplication UseServingPipeline(this WebApplication app)
    {
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        // X-Model-Version on every response: the answering model's (set by the endpoint) or the current one.
        app.Use((ctx, next) =>
        {
            ctx.Response.OnStarting(() =>
            {
                if (!ctx.Response.Headers.ContainsKey(ServingApi.VersionHeader) && ctx.RequestServices.GetRequiredService<RecommendationEngine>().Status() is { } s)
                    ctx.Response.Headers[ServingApi.VersionHeader] = s.Version;
                return Task.CompletedTask;
            });
            return next(ctx);
        });
        app.MapOpenApi();
        // Mapped in every environment: the AppHost and Kubernetes probe them.
        app.MapHealthChecks("/health");
        app.MapHealthChecks("/alive", new Microsoft.AspNetCore.Diagnostics.HealthChecks.HealthCheckOptions { Predicate = r => r.Tags.Contains("live") });
        return app;
    }
}

/// <summary>Ready once a model is loaded and warmed up.</summary>
internal sealed class ModelReadyCheck(RecommendationEngine engine) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(engine.Status() is { } s
            ? HealthCheckResult.Healthy($"model {s.Version} loaded {s.LoadedAt:O}")
            : HealthCheckResult.Unhealthy("no model loaded yet"));
}

/// <summary>Polls the bundle root (the fallback to the ModelPublished event, and how a restarted instance finds the
/// bundles it installed): the newest or pinned bundle is loaded
/// and swapped in. A failing poll is logged and the loop goes on.</summary>
internal sealed class BundleWatcher(RecommendationEngine engine, IOptions<ServingOptions> options, ILogger<BundleWatcher> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try { await engine.PollAsync(stoppingToken); }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { return; }
            catch (Exception e) { log.LogError(e, "Polling {Root} failed", options.Value.BundleRoot); }
            try { await Task.Delay(options.Value.PollInterval, stoppingToken); }
            catch (OperationCanceledException) { return; }
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        await engine.DisposeAsync();
    }
}
