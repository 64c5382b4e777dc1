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

builder.Build().Run();
