using LSVCR.Orchestration.Messaging;
using LSVCR.Steps;

// Fine-tuning worker: one FineTune (one task) at a time per instance; run two for Rec and CommRank in parallel.
var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults();
builder.Services
    .AddFineTuningStep(builder.Configuration)
    .AddLsvcrBus(builder.Configuration, bus => bus.AddFineTuningConsumer());

var app = builder.Build();
app.MapDefaultEndpoints();
app.Run();
