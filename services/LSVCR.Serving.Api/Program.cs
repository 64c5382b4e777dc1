using LSVCR.Serving.Api;

var builder = WebApplication.CreateBuilder(args);
builder.AddServingServices();

var app = builder.Build();
app.UseServingPipeline();
app.MapServingApi();
app.Run();

/// <summary>Entry point; public for the API tests' WebApplicationFactory.</summary>
public partial class Program;
