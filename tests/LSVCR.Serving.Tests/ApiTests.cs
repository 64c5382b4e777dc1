using System.Net;
using System.Text.Json.Nodes;

namespace LSVCR.Serving.Tests;

/// <summary>Both endpoints, unknown ids, fallback, every bad-input class, /v1/model, health, OpenAPI, admin auth.</summary>
public sealed class ApiTests(BundlesFixture bundles) : IClassFixture<BundlesFixture>, IAsyncLifetime
{
    private ServingFactory _factory = null!;
    private HttpClient _client = null!;
    private ServingModel _model = null!;

    public async Task InitializeAsync()
    {
        _factory = new ServingFactory(bundles.NewRoot(bundles.A), new Dictionary<string, string?> { ["Serving:MaxIds"] = "500", ["Serving:MaxBodyBytes"] = "20000" });
        _client = await _factory.ReadyClientAsync();
        _model = ServingModel.Load(bundles.A.BundleDir, new ServingOptions());
    }

    public async Task DisposeAsync()
    {
        _model.Dispose();
        await _factory.DisposeAsync();
    }

    private string V(int i) => _model.VideoIds[i];

    /// <summary>The ranking the bundle's model gives, computed here from the model directly.</summary>
    private (string Id, float Score)[] ExpectedVideos(string[] history, int k, bool excludeSeen, string[] exclude)
    {
        var resolved = HistoryResolver.Resolve(_model, history, []);
        using var output = _model.EncodeRec([resolved.History]);
        var scores = output.Scores(0);
        scores[0] = float.NegativeInfinity;
        if (excludeSeen) foreach (var v in resolved.History.Videos) scores[v] = float.NegativeInfinity;
        foreach (var e in exclude) scores[_model.VideoIndex[e]] = float.NegativeInfinity;
        return [.. TopK.Select(scores, k).Select(t => (_model.VideoIds[t.Id], t.Score))];
    }

    private static (string Id, float Score)[] Items(JsonObject body, string key) =>
        [.. body["items"]!.AsArray().Select(i => ((string)i![key]!, (float)i["score"]!))];

    [Fact]
    public async Task Videos_endpoint_returns_the_models_top_k_without_seen_or_excluded_videos()
    {
        string[] history = [V(3), V(9), V(4)];
        var response = await _client.PostJsonAsync("/v1/recommendations/videos", new
        {
            video_history = history, comment_history = new[] { new { video = V(5), comments = new[] { _model.CommentIds[1] } } },
            k = 7, exclude = new[] { V(1) },
        });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.BodyAsync();
        Assert.Equal(bundles.A.Manifest.ModelVersion, (string?)body["model_version"]);
        Assert.Equal(bundles.A.Manifest.ModelVersion, response.Headers.GetValues("X-Model-Version").Single());
        var items = Items(body, "video");
        Assert.Equal(7, items.Length);
        Assert.DoesNotContain(items, i => history.Contains(i.Id) || i.Id == V(1));
        Assert.True(items.Zip(items.Skip(1)).All(p => p.First.Score >= p.Second.Score));
        Assert.Null(body["fallback"]);

        // The same ranking as the model's with the comment history: recompute without it and it must differ or match by chance only;
        // the exact check is on a request without comment history.
        var plain = await (await _client.PostJsonAsync("/v1/recommendations/videos", new { video_history = history, k = 7, exclude = new[] { V(1) } })).BodyAsync();
        var expected = ExpectedVideos(history, 7, true, [V(1)]);
        var actual = Items(plain, "video");
        Assert.Equal(expected.Select(e => e.Id), actual.Select(a => a.Id));
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i].Score, actual[i].Score, 4);
    }

    [Fact]
    public async Task Exclude_seen_false_lets_history_videos_back_in()
    {
        string[] history = [V(3), V(9)];
        var body = await (await _client.PostJsonAsync("/v1/recommendations/videos", new { video_history = history, k = 64, exclude_seen = false })).BodyAsync();
        var ids = Items(body, "video").Select(i => i.Id).ToList();
        Assert.Equal(_model.VideoCount - 1, ids.Count); // every real video, the history included
        Assert.Contains(V(3), ids);
        Assert.Equal(ExpectedVideos(history, 64, false, []).Select(e => e.Id), ids);
    }

    [Fact]
    public async Task Unknown_history_ids_are_dropped_and_listed_numbers_are_ids_too()
    {
        var response = await _client.PostRawAsync("/v1/recommendations/videos",
            $$"""{"video_history": ["{{V(3)}}", "no-such-video", 123456789], "comment_history": [{"video": "{{V(4)}}", "comments": ["ghost-comment"]}, {"video": "ghost-video", "comments": []}], "k": 5}""");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.BodyAsync();
        Assert.Equal(["no-such-video", "123456789", "ghost-video"], body["unknown_videos"]!.AsArray().Select(n => (string)n!));
        Assert.Equal(["ghost-comment"], body["unknown_comments"]!.AsArray().Select(n => (string)n!));
        Assert.Equal(5, body["items"]!.AsArray().Count);
        Assert.Null(body["fallback"]);
    }

    [Fact]
    public async Task A_user_without_usable_history_gets_the_popularity_ranking()
    {
        var body = await (await _client.PostJsonAsync("/v1/recommendations/videos", new { video_history = new[] { "unknown-1" }, k = 5 })).BodyAsync();
        Assert.Equal("popularity", (string?)body["fallback"]);
        Assert.Equal(_model.Popular.Take(5).Select(v => _model.VideoIds[v]), Items(body, "video").Select(i => i.Id));
        Assert.Equal(_model.PopularityScore.Take(5), Items(body, "video").Select(i => i.Score));
        var comments = await (await _client.PostJsonAsync("/v1/recommendations/comments", new { video = V(2), k = 3 })).BodyAsync();
        Assert.Equal("popularity", (string?)comments["fallback"]);
        Assert.Equal(_model.CommentsOf(2).ToArray().Take(3).Select(c => _model.CommentIds[c]), Items(comments, "comment").Select(i => i.Id));
    }

    [Fact]
    public async Task Comments_endpoint_ranks_the_watched_videos_comments_or_the_given_candidates()
    {
        var watched = Enumerable.Range(1, _model.VideoCount - 1).First(v => _model.CommentsOf(v).Length >= 4);
        var all = _model.CommentsOf(watched).ToArray();
        object history = new[] { V(3), V(7) };
        var response = await _client.PostJsonAsync("/v1/recommendations/comments", new { video_history = history, video = V(watched), k = 100 });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var items = Items(await response.BodyAsync(), "comment");
        Assert.Equal(all.Select(c => _model.CommentIds[c]).Order(), items.Select(i => i.Id).Order());

        var resolved = HistoryResolver.Resolve(_model, [V(3), V(7)], []);
        var user = _model.EncodeCommRank([resolved.History], [watched]);
        var expected = all.Select(c => (Id: _model.CommentIds[c], Score: TopK.Dot(user, _model.CommentVector(c), _model.InverseTemperature)))
            .OrderByDescending(x => x.Score).ToArray();
        Assert.Equal(expected.Select(e => e.Id), items.Select(i => i.Id));
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i].Score, items[i].Score, 4);

        var two = new[] { _model.CommentIds[all[0]], _model.CommentIds[all[3]] };
        var subset = Items(await (await _client.PostJsonAsync("/v1/recommendations/comments", new { video_history = history, video = V(watched), candidates = two })).BodyAsync(), "comment");
        Assert.Equal(two.Order(), subset.Select(s => s.Id).Order());
    }

    [Theory]
    [InlineData("{\"video\": \"nope\"}", "video")]
    [InlineData("{\"video\": \"$V1\", \"candidates\": [\"$C1\", \"no-such-comment\"]}", "candidates[1]")]
    public async Task Unknown_watched_video_or_candidate_is_a_400_naming_it(string template, string field)
    {
        var body = template.Replace("$V1", V(1)).Replace("$C1", _model.CommentIds[1]);
        var response = await _client.PostRawAsync("/v1/recommendations/comments", body);
        await AssertProblem(response, HttpStatusCode.BadRequest, field);
    }

    public static TheoryData<string, string, string> BadInputs => new()
    {
        { "videos", "{\"video_history\": [\"a\"", "video_history[1]" },       // malformed JSON: where it broke
        { "videos", "not json at all", "body" },
        { "videos", "", "body" },
        { "videos", "null", "body" },
        { "videos", "[1, 2]", "body" },
        { "videos", "{\"k\": \"ten\"}", "k" },                                // wrong type
        { "videos", "{\"k\": 2.5}", "k" },
        { "videos", "{\"exclude_seen\": \"yes\"}", "exclude_seen" },
        { "videos", "{\"video_history\": \"v1\"}", "video_history" },
        { "videos", "{\"video_history\": [true]}", "video_history[0]" },
        { "videos", "{\"video_history\": [{\"id\": 1}]}", "video_history[0]" },
        { "videos", "{\"comment_history\": [{\"video\": \"v\", \"comments\": 5}]}", "comment_history[0].comments" },
        { "videos", "{\"comment_history\": [null]}", "comment_history[0]" },
        { "videos", "{\"comment_history\": [{\"comments\": []}]}", "comment_history[0].video" },
        { "videos", "{\"video_history\": [\"\"]}", "video_history[0]" },
        { "videos", "{\"colour\": \"blue\"}", "colour" },                     // unknown field
        { "videos", "{\"k\": 0}", "k" },                                      // k out of range
        { "videos", "{\"k\": 1001}", "k" },
        { "videos", "{\"k\": -5}", "k" },
        { "videos", "{\"k\": 99999999999}", "k" },
        { "comments", "{\"k\": 3}", "video" },
        { "comments", "{\"video\": \"v\", \"k\": 0}", "k" },
        { "comments", "{\"video\": \"v\", \"candidates\": []}", "candidates" },
        { "comments", "{\"video\": 5.5e400}", "video" },
    };

    [Theory]
    [MemberData(nameof(BadInputs))]
    public async Task Bad_input_is_a_400_problem_naming_the_field(string endpoint, string body, string field)
    {
        var response = await _client.PostRawAsync($"/v1/recommendations/{endpoint}", body);
        await AssertProblem(response, HttpStatusCode.BadRequest, field);
    }

    [Fact]
    public async Task Too_many_ids_is_a_400_naming_the_largest_field()
    {
        var ids = Enumerable.Range(0, 501).Select(i => $"v{i}").ToArray();
        await AssertProblem(await _client.PostJsonAsync("/v1/recommendations/videos", new { video_history = new[] { "x" }, exclude = ids }), HttpStatusCode.BadRequest, "exclude");
    }

    [Fact]
    public async Task Oversized_bodies_are_413_with_or_without_content_length()
    {
        var big = "{\"video_history\": [" + string.Join(",", Enumerable.Range(0, 3000).Select(i => $"\"video-{i}\"")) + "]}";
        await AssertProblem(await _client.PostRawAsync("/v1/recommendations/videos", big), HttpStatusCode.RequestEntityTooLarge, null);
        var chunked = new StreamContent(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(big)));
        chunked.Headers.ContentType = new("application/json");
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/recommendations/comments") { Content = chunked };
        request.Headers.TransferEncodingChunked = true;
        await AssertProblem(await _client.SendAsync(request), HttpStatusCode.RequestEntityTooLarge, null);
    }

    private static async Task AssertProblem(HttpResponseMessage response, HttpStatusCode status, string? field)
    {
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var body = await response.BodyAsync();
        Assert.Equal((int)status, (int?)body["status"]);
        Assert.False(string.IsNullOrEmpty((string?)body["detail"]));
        if (field is not null)
        {
            var errors = body["errors"]?.AsObject();
            Assert.True(errors is not null && errors.ContainsKey(field), $"errors should name \"{field}\": {body.ToJsonString()}");
        }
    }

    [Fact]
    public async Task Model_endpoint_health_and_openapi()
    {
        var model = await (await _client.GetAsync("/v1/model")).BodyAsync();
        Assert.Equal(bundles.A.Manifest.ModelVersion, (string?)model["model_version"]);
        Assert.Equal(bundles.A.Catalog.PhotoCount - 1, (int?)model["videos"]);
        Assert.Equal(bundles.A.Catalog.CommentCount - 1, (int?)model["comments"]);
        Assert.Equal("test-run-101", (string?)model["training_run"]);
        Assert.True(DateTimeOffset.Parse((string)model["loaded_at"]!) > DateTimeOffset.UtcNow.AddMinutes(-10));
        Assert.Equal(HttpStatusCode.OK, (await _client.GetAsync("/alive")).StatusCode);
        var health = await _client.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Equal(bundles.A.Manifest.ModelVersion, health.Headers.GetValues("X-Model-Version").Single());
        var openapi = await (await _client.GetAsync("/openapi/v1.json")).BodyAsync();
        var videos = openapi["paths"]!["/v1/recommendations/videos"]!["post"]!;
        Assert.Equal("RecommendVideos", (string?)videos["operationId"]);
        Assert.Equal(3, (int?)videos["requestBody"]!["content"]!["application/json"]!["example"]!["k"]);
        Assert.NotNull(openapi["paths"]!["/v1/recommendations/comments"]!["post"]!["responses"]!["200"]!["content"]!["application/json"]!["example"]);
    }

    [Fact]
    public async Task Admin_endpoints_need_the_api_key()
    {
        var pin = new { version = bundles.A.Manifest.ModelVersion };
        Assert.Equal(HttpStatusCode.Unauthorized, (await _client.PostJsonAsync("/v1/admin/pin", pin)).StatusCode);
        var wrong = new HttpRequestMessage(HttpMethod.Post, "/v1/admin/rollback");
        wrong.Headers.Add("X-Api-Key", "wrong");
        var unauthorized = await _client.SendAsync(wrong);
        Assert.Equal(HttpStatusCode.Unauthorized, unauthorized.StatusCode);
        Assert.Equal("application/problem+json", unauthorized.Content.Headers.ContentType?.MediaType);

        using var admin = _factory.CreateClient();
        admin.DefaultRequestHeaders.Add("X-Api-Key", ServingFactory.AdminKey);
        Assert.Equal(HttpStatusCode.NotFound, (await admin.PostJsonAsync("/v1/admin/pin", new { version = "0000000000000000" })).StatusCode);
        var ok = await admin.PostJsonAsync("/v1/admin/pin", pin);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Equal(bundles.A.Manifest.ModelVersion, (string?)(await ok.BodyAsync())["pinned"]);
        Assert.Equal(HttpStatusCode.Conflict, (await admin.PostAsync("/v1/admin/rollback", null)).StatusCode); // only one version has been live
        Assert.Equal(HttpStatusCode.OK, (await admin.DeleteAsync("/v1/admin/pin")).StatusCode);
    }
}
