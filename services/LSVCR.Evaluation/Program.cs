using LSVCR.Orchestration.Messaging;
using LSVCR.Steps;

// Evaluation worker: report, quality gate against popularity, publication of the model.
var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults();
builder.Services
    .AddEvaluationStep(builder.Configuration)
    .AddLsvcrBus(builder.Configuration, bus => bus.AddEvaluationConsumer());

var app = builder.Build();
app.MapDefaultEndpoints();
app.Run();
