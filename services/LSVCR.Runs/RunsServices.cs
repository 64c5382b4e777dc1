using System.Text.Json.Serialization;
using LSVCR.Artifacts;
using LSVCR.Orchestration.Messaging;
using LSVCR.Orchestration.Runs;
using LSVCR.Steps;

namespace LSVCR.Runs;

public static class RunsServices
{
    public static IServiceCollection AddRunsServices(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddArtifactStore(configuration).AddIntake().AddRunStore(configuration);
        services.AddLsvcrBus(configuration, bus => bus.AddPipelineRuns(durable: true));
        services.AddProblemDetails();
        services.AddOpenApi();
        services.ConfigureHttpJsonOptions(o => o.SerializerOptions.Converters.Add(new JsonStringEnumConverter()));
        services.AddSingleton(TimeProvider.System);
        return services;
    }
}
