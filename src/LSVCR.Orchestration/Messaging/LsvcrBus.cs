using Azure.Data.Tables;
using LSVCR.Orchestration.Runs;
using LSVCR.Orchestration.Sagas;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace LSVCR.Orchestration.Messaging;

/// <summary>The bus every service uses: RabbitMQ from <c>ConnectionStrings:bus</c> (an AMQP URI), kebab-case endpoints.</summary>
public static class LsvcrBus
{
    public const string BusConnection = "bus", RunsConnection = "runs", RunsTable = "pipelineruns";

    public static IServiceCollection AddLsvcrBus(this IServiceCollection services, IConfiguration configuration,
        Action<IBusRegistrationConfigurator> configure)
    {
        var uri = Connection(configuration, BusConnection, "an AMQP URI such as amqp://user:password@127.0.0.1:5672/");
        if (!Uri.TryCreate(uri, UriKind.Absolute, out var amqp) || amqp.Scheme is not ("amqp" or "amqps"))
            throw new LsvcrException($"ConnectionStrings:{BusConnection} '{Redact(uri)}' is not an amqp:// URI");
        services.AddMassTransit(x =>
        {
            x.SetKebabCaseEndpointNameFormatter();
            configure(x);
            x.UsingRabbitMq((context, bus) =>
            {
                var credentials = Uri.UnescapeDataString(amqp.UserInfo).Split(':', 2);
                bus.Host(amqp.Host, (ushort)(amqp.IsDefaultPort ? 5672 : amqp.Port), amqp.AbsolutePath.Length > 1 ? amqp.AbsolutePath[1..] : "/", h =>
                {
                    if (credentials[0].Length > 0) h.Username(credentials[0]);
                    if (credentials.Length > 1) h.Password(credentials[1]);
                });
                bus.ConfigureEndpoints(context);
            });
        });
        return services;
    }

    /// <summary>The pipeline-run store: an Azure table from <c>ConnectionStrings:runs</c>.</summary>
    public static IServiceCollection AddRunStore(this IServiceCollection services, IConfiguration configuration)
    {
        var cs = Connection(configuration, RunsConnection, "an Azure Storage connection string (Azurite locally)");
        services.AddSingleton(new TableSagaStore<PipelineRunState>(new TableServiceClient(cs).GetTableClient(RunsTable), s => s.CurrentState));
        return services;
    }

    private static string Connection(IConfiguration configuration, string name, string what) =>
        configuration.GetConnectionString(name) is { Length: > 0 } value ? value
            : throw new LsvcrException($"no ConnectionStrings:{name} configured ({what}); the AppHost provides it");

    private static string Redact(string uri) => System.Text.RegularExpressions.Regex.Replace(uri, "//[^@/]*@", "//***@");
}
