using LSVCR.Orchestration.Messaging;
using LSVCR.Steps;

// Embeddings worker: any number of instances share the queue (competing consumers).
var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults();
builder.Services
    .AddEmbeddingSteps(builder.Configuration)
    .AddLsvcrBus(builder.Configuration, bus => bus.AddEmbeddingConsumers());

var app = builder.Build();
app.MapDefaultEndpoints();
app.Run();
