using LSVCR.AppHost;
using Microsoft.Extensions.Configuration;

var builder = DistributedApplication.CreateBuilder(args);
var (rabbitMqProgram, azuriteProgram) = LocalPrograms.Require();
// Broker and storage data outlive an AppHost restart (runs resume); tests pass --LocalData to a folder of their own.
var localData = builder.Configuration["LocalData"] ?? Path.Combine(builder.AppHostDirectory, ".data");
// A step holds its message until it is done, so the broker's acknowledgement timeout must outlast the longest step
// (RabbitMQ's default is 30 min; training can take hours). docs/distributed.md, "Long steps".
var consumerTimeout = TimeSpan.FromMinutes(builder.Configuration.GetValue("ConsumerTimeoutMinutes", 24 * 60.0));

// Infrastructure
var bus = builder.AddLocalRabbitMq("bus", rabbitMqProgram, Path.Combine(localData, "rabbitmq"), consumerTimeout);
var storage = builder.AddLocalAzurite("storage", azuriteProgram, Path.Combine(localData, "azurite"));

// Services: each gets the broker and the store under its short connection names and starts once they are healthy.
// The API people call (README: http://localhost:5180); tests pick a free port.
builder.AddProject<Projects.LSVCR_Runs>("runs-api")
    .WithHttpEndpoint(port: builder.Configuration.GetValue("RunsApiPort", 5180) is > 0 and var port ? port : null).WithHttpHealthCheck("/health")
    .WithReference(bus).WithReference(storage, "artifacts").WithReference(storage, "runs")
    .WaitFor(bus).WaitFor(storage);

builder.AddProject<Projects.LSVCR_EmbeddingsService>("embeddings")
    .WithHttpEndpoint().WithHttpHealthCheck("/health")
    .WithReference(bus).WithReference(storage, "artifacts")
    .WaitFor(bus).WaitFor(storage);

// Stage 1 (runs with "align": true): the LLM and the SR model train together; the default settings are the embedded
// pipeline's bounded CPU sample (docs/alignment.md); AlignmentExamples shrinks it further (tests).
var alignment = builder.AddProject<Projects.LSVCR_AlignmentService>("alignment")
    .WithHttpEndpoint().WithHttpHealthCheck("/health")
    .WithReference(bus).WithReference(storage, "artifacts").WithReference(storage, "runs") // durable job records
    .WaitFor(bus).WaitFor(storage);
if (builder.Configuration["AlignmentExamples"] is { Length: > 0 } examples)
    alignment.WithEnvironment("Jobs__Alignment__Align__Examples", examples);

// Two instances: Rec and CommRank train at the same time, one task per instance.
builder.AddProject<Projects.LSVCR_FineTuning>("fine-tuning")
    .WithReplicas(builder.Configuration.GetValue("FineTuningReplicas", 2))
    .WithHttpEndpoint().WithHttpHealthCheck("/health")
    .WithEnvironment("Jobs__FineTuning__Training__Threads", "1")
    // "runs": the durable job records a long step runs under (docs/distributed.md, "Long steps").
    .WithReference(bus).WithReference(storage, "artifacts").WithReference(storage, "runs")
    .WaitFor(bus).WaitFor(storage);

builder.AddProject<Projects.LSVCR_Evaluation>("evaluation")
    .WithHttpEndpoint().WithHttpHealthCheck("/health")
    .WithReference(bus).WithReference(storage, "artifacts")
    .WaitFor(bus).WaitFor(storage);

// Serving: loads each ModelPublished bundle (downloaded from the store) into a bundle root of its own and hot-swaps;
// /health turns ready once a model is live.
builder.AddProject<Projects.LSVCR_Serving_Api>("serving")
    .WithHttpEndpoint(port: builder.Configuration.GetValue("ServingPort", 5190) is > 0 and var servingPort ? servingPort : null).WithHttpHealthCheck("/health")
    .WithEnvironment("Serving__BundleRoot", Path.Combine(localData, "serving", "bundles"))
    .WithEnvironment("Artifacts__CacheDirectory", Path.Combine(localData, "serving", "cache"))
    .WithReference(bus).WithReference(storage, "artifacts")
    .WaitFor(bus).WaitFor(storage);

builder.Build().Run();
