using LSVCR.Orchestration.Messaging;
using LSVCR.Steps;

// Stage-1 alignment worker: one AlignPreferences at a time per instance (the LLM and the SR model train together).
var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults();
builder.Services
    .AddAlignmentStep(builder.Configuration)
    .AddLsvcrBus(builder.Configuration, bus => bus.AddAlignmentConsumer());

var app = builder.Build();
app.MapDefaultEndpoints();
app.Run();
