using LSVCR.Contracts;
using LSVCR.Jobs;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace LSVCR.Steps;

/// <summary>Registration of each step: its job service and its consumer (a service host adds the steps it runs).</summary>
public static class StepRegistration
{
    public static IServiceCollection AddEmbeddingSteps(this IServiceCollection services, IConfiguration configuration) =>
        services.AddEmbeddingsJob(configuration).AddIntake();

    public static IServiceCollection AddAlignmentStep(this IServiceCollection services, IConfiguration configuration) =>
        services.AddAlignmentJob(configuration);

    public static IServiceCollection AddFineTuningStep(this IServiceCollection services, IConfiguration configuration) =>
        services.AddFineTuningJob(configuration);

    public static IServiceCollection AddEvaluationStep(this IServiceCollection services, IConfiguration configuration)
    {
        services.TryAddSingleton(TimeProvider.System);
        return services.AddEvaluationJob(configuration);
    }

    public static IServiceCollection AddIntake(this IServiceCollection services)
    {
        services.TryAddSingleton<DatasetIntake>();
        return services;
    }

    public static void AddEmbeddingConsumers(this IBusRegistrationConfigurator bus)
    {
        bus.AddConsumer<GenerateDatasetConsumer, StepConsumerDefinition<GenerateDatasetConsumer>>();
        bus.AddConsumer<ComputeEmbeddingsConsumer, StepConsumerDefinition<ComputeEmbeddingsConsumer>>();
        bus.AddConsumer<ComputeEmbeddingChunkConsumer, StepConsumerDefinition<ComputeEmbeddingChunkConsumer>>();
    }

    /// <summary>Stage-1 alignment as a durable step, like fine-tuning.</summary>
    public static void AddAlignmentConsumer(this IBusRegistrationConfigurator bus) =>
        bus.AddDurableStep<AlignPreferencesConsumer, AlignPreferences>("align-preferences");

    /// <summary>Fine-tuning as a durable step (<see cref="DurableSteps"/>): its message is acknowledged at once and the
    /// training runs under a job record with a heartbeat, so it may run longer than the broker's consumer timeout.</summary>
    public static void AddFineTuningConsumer(this IBusRegistrationConfigurator bus) =>
        bus.AddDurableStep<FineTuneConsumer, FineTune>("fine-tune");

    public static void AddEvaluationConsumer(this IBusRegistrationConfigurator bus) =>
        bus.AddConsumer<EvaluateConsumer, StepConsumerDefinition<EvaluateConsumer>>();
}
