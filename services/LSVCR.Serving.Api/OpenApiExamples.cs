using System.Text.Json.Nodes;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace LSVCR.Serving.Api;

/// <summary>Request and response examples in the OpenAPI document.</summary>
internal static class OpenApiExamples
{
    private static readonly Dictionary<string, (string Request, string Response)> ByOperation = new()
    {
        ["RecommendVideos"] = (
            """{"video_history": ["v12", "v7"], "comment_history": [{"video": "v7", "comments": ["c301", "c305"]}], "k": 3, "exclude": ["v99"], "exclude_seen": true}""",
            """{"model_version": "3f2a9c0d1e4b5a67", "items": [{"video": "v40", "score": 9.81}, {"video": "v3", "score": 9.12}, {"video": "v18", "score": 8.77}], "unknown_videos": [], "unknown_comments": []}"""),
        ["RankComments"] = (
            """{"video_history": ["v12"], "comment_history": [{"video": "v7", "comments": ["c301"]}], "video": "v40", "k": 2}""",
            """{"model_version": "3f2a9c0d1e4b5a67", "items": [{"comment": "c812", "score": 7.4}, {"comment": "c809", "score": 6.9}], "unknown_videos": [], "unknown_comments": []}"""),
    };

    public static Task Apply(OpenApiOperation operation, OpenApiOperationTransformerContext context, CancellationToken ct)
    {
        if (operation.OperationId is { } id && ByOperation.TryGetValue(id, out var ex))
        {
            if (operation.RequestBody?.Content?.TryGetValue("application/json", out var request) == true) request.Example = JsonNode.Parse(ex.Request);
            if (operation.Responses?.TryGetValue("200", out var ok) == true && ok.Content?.TryGetValue("application/json", out var response) == true)
                response.Example = JsonNode.Parse(ex.Response);
        }
        return Task.CompletedTask;
    }
}
