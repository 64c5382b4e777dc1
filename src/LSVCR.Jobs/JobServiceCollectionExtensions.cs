using LSVCR.Artifacts;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace LSVCR.Jobs;

/// <summary>
/// Registers the jobs as singletons, with their options bound from configuration and validated when the host starts
/// (<c>ValidateOnStart</c>), the artifact store (<see cref="ArtifactStores.AddArtifactStore"/>) and metrics. The host
/// provides logging (every generic host does).
/// </summary>
public static class JobServiceCollectionExtensions
{
    public static IServiceCollection AddEmbeddingsJob(this IServiceCollection services, IConfiguration configuration) =>
        services.AddJob<EmbeddingsJobOptions, EmbeddingsJobService>(configuration, EmbeddingsJobOptions.Section);

    public static IServiceCollection AddFineTuningJob(this IServiceCollection services, IConfiguration configuration) =>
        services.AddJob<FineTuningJobOptions, FineTuningJobService>(configuration, FineTuningJobOptions.Section);

    public static IServiceCollection AddAlignmentJob(this IServiceCollection services, IConfiguration configuration) =>
        services.AddJob<AlignmentJobOptions, AlignmentJobService>(configuration, AlignmentJobOptions.Section);

    /// <summary>The evaluation job and the serving-bundle export the publish step runs after it.</summary>
    public static IServiceCollection AddEvaluationJob(this IServiceCollection services, IConfiguration configuration)
    {
        services.TryAddSingleton<ServingBundleJobService>();
        return services.AddJob<EvaluationJobOptions, EvaluationJobService>(configuration, EvaluationJobOptions.Section);
    }

    public static IServiceCollection AddExperimentJob(this IServiceCollection services, IConfiguration configuration) =>
        services.AddJob<ExperimentJobOptions, ExperimentJobService>(configuration, ExperimentJobOptions.Section);

    /// <summary>Every job (the embedded pipeline, or a host running every step).</summary>
    public static IServiceCollection AddLsvcrJobs(this IServiceCollection services, IConfiguration configuration) =>
        services.AddEmbeddingsJob(configuration).AddAlignmentJob(configuration).AddFineTuningJob(configuration).AddEvaluationJob(configuration)
            .AddExperimentJob(configuration);

    private static IServiceCollection AddJob<TOptions, TJob>(this IServiceCollection services, IConfiguration configuration, string section)
        where TOptions : class where TJob : class
    {
        services.AddArtifactStore(configuration);
        services.AddMetrics();
        if (!services.Any(d => d.ServiceType == typeof(IConfigureOptions<JobsOptions>)))
            services.AddOptions<JobsOptions>().Bind(configuration.GetSection(JobsOptions.Section)).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<JobsOptions>, JobOptionsValidator>());
        services.AddOptions<TOptions>().Bind(configuration.GetSection(section)).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton(typeof(IValidateOptions<TOptions>), typeof(JobOptionsValidator)));
        services.TryAddSingleton<TJob>();
        return services;
    }
}
