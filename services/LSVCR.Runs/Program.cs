using LSVCR.Runs;

// The orchestrator: the pipeline-run state machine and the Runs API.
var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults();
builder.Services.AddRunsServices(builder.Configuration);

var app = builder.Build();
app.MapDefaultEndpoints();
app.MapOpenApi();
app.MapRunsApi();
app.Run();
