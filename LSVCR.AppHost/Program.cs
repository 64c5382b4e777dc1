using LSVCR.AppHost;
using Microsoft.Extensions.Configuration;

var builder = DistributedApplication.CreateBuilder(args);
var (rabbitMqProgram, azuriteProgram) = LocalPrograms.Require();
// Broker and storage data outlive an AppHost restart (runs resume); tests pass --LocalData to a folder of their own.
var localData = builder.Configuration["LocalData"] ?? Path.Combine(builder.AppHostDirectory, ".data");
// Steps that outlast this timeout are handled by the step runner (docs/distributed.md, long steps).
var consumerTimeout = TimeSpan.FromMinutes(builder.Configuration.GetValue("ConsumerTimeoutMinutes", 30.0));

// Infrastructure
var bus = builder.AddLocalRabbitMq("bus", rabbitMqProgram, Path.Combine(localData, "rabbitmq"), consumerTimeout);
var storage = builder.AddLocalAzurite("storage", azuriteProgram, Path.Combine(localData, "azurite"));

// Services: each gets the broker and the store under its short connection names and starts once they are healthy.
// The API people call (README: http://localhost:5180); tests pick a free port.
builder.AddProject<Projects.LSVCR_Runs>("runs-api")
    .WithHttpEndpoint(port: builder.Configuration.GetValue<int?>("RunsApiPort", 5180)).WithHttpHealthCheck("/health")
    .WithReference(bus).WithReference(storage, "artifacts").WithReference(storage, "runs")
    .WaitFor(bus).WaitFor(storage);

builder.AddProject<Projects.LSVCR_EmbeddingsService>("embeddings")
    .WithHttpEndpoint().WithHttpHealthCheck("/health")
    .WithReference(bus).WithReference(storage, "artifacts")
    .WaitFor(bus).WaitFor(storage);

// Two instances: Rec and CommRank train at the same time, one task per instance.
builder.AddProject<Projects.LSVCR_FineTuning>("fine-tuning")
    .WithReplicas(builder.Configuration.GetValue("FineTuningReplicas", 2))
    .WithHttpEndpoint().WithHttpHealthCheck("/health")
    .WithEnvironment("Jobs__FineTuning__Training__Threads", "1")
    .WithReference(bus).WithReference(storage, "artifacts")
    .WaitFor(bus).WaitFor(storage);

builder.AddProject<Projects.LSVCR_Evaluation>("evaluation")
    .WithHttpEndpoint().WithHttpHealthCheck("/health")
    .WithReference(bus).WithReference(storage, "artifacts")
    .WaitFor(bus).WaitFor(storage);

builder.Build().Run();
