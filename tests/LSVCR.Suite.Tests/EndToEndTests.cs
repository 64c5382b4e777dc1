using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Azure.Storage.Blobs;
using LSVCR.Artifacts;
using LSVCR.Data;
using LSVCR.Training;

namespace LSVCR.Suite.Tests;

[Collection(SuiteCollection.Name)]
public sealed class EndToEndTests(SuiteFixture suite)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    [Fact]
    public async Task Uploaded_dataset_runs_to_ModelPublished_and_the_published_model_reproduces_its_report()
    {
        var dir = SuiteFixture.TinyDataset();
        var dataset = await Upload(SuiteFixture.Zip(dir));
        Assert.Equal(HttpStatusCode.Created, dataset.StatusCode);
        var datasetId = (await dataset.Content.ReadFromJsonAsync<JsonObject>())!["datasetId"]!.GetValue<string>();

        var started = await suite.Api.PostAsJsonAsync("/v1/runs", new
        {
            datasetId,
            // The fine-tuning keys are those of `lsvcr train --config` (TrainOptions); they must reach the checkpoint.
            // Stage 1 on a tiny sample (the fixture starts the Alignment service with AlignmentExamples=8).
            // The shape comes from the aligned SR weights (a conflicting "hidden" would be refused, as with --init).
            options = new { fineTune = new JsonObject { ["epochs"] = 1, ["dropout"] = 0.1, ["weight-decay"] = 0.0, ["adam-beta2"] = 0.98 },
                gate = new { enabled = false }, align = true },
        });
        Assert.Equal(HttpStatusCode.Accepted, started.StatusCode);
        var runId = (await started.Content.ReadFromJsonAsync<JsonObject>())!["runId"]!.GetValue<string>();
        Assert.Equal($"/v1/runs/{runId}", started.Headers.Location!.OriginalString);

        var run = await WaitForEnd(runId, TimeSpan.FromMinutes(15));
        Assert.True(run["state"]!.GetValue<string>() == "Published", $"run ended {run["state"]}: {run["failureReason"]}");
        var steps = run["steps"]!.AsArray().Select(s => (s!["name"]!.GetValue<string>(), s["status"]!.GetValue<string>())).ToList();
        Assert.Equal([("embeddings", "Completed"), ("alignment", "Completed"), ("fine-tuning-rec", "Completed"), ("fine-tuning-comm_rank", "Completed"),
            ("evaluation", "Completed")], steps);
        // Stage 2 read the items as the aligned LLM re-encoded them, and started from the aligned SR weights.
        var aligned = run["artifacts"]!["alignment"].Deserialize<ArtifactSetReference>(Json)!;
        Assert.Equal("alignment", (await suite.Store.GetManifestAsync(aligned)).Kind);
        Assert.Equal($"runs/{Guid.Parse(runId):N}/alignment-embeddings", run["artifacts"]!["embeddings"]!["set"]!.GetValue<string>());
        Assert.Contains(runId, (await suite.Api.GetFromJsonAsync<JsonArray>("/v1/runs"))!.Select(r => r!["runId"]!.GetValue<string>()));

        // Download the published model from blob storage and score the test split with it: the same figures as the report.
        var bundleRef = run["artifacts"]!["bundle"].Deserialize<ArtifactSetReference>(Json)!;
        var bundle = await suite.Store.OpenAsync(bundleRef);
        var manifest = JsonNode.Parse(await File.ReadAllTextAsync(bundle.PathOf("bundle.json")))!;
        var rec = manifest["models"]!["rec"].Deserialize<ArtifactSetReference>(Json)!;
        Assert.Equal("azure-blob", rec.Store);
        var data = ReferenceLayout.Read((await suite.Store.OpenAsync(manifest["dataset"]!["files"].Deserialize<ArtifactSetReference>(Json)!)).Directory);
        var embeddings = await suite.Store.OpenAsync(manifest["embeddings"].Deserialize<ArtifactSetReference>(Json)!);
        var (photos, comments) = TextEmbeddings.Load(embeddings.Directory, data.Catalog);
        var (model, info) = ModelStore.Load((await suite.Store.OpenAsync(rec)).Directory, photos, comments);
        Assert.Equal((1, 0.1, 0.0, 0.98), (info.Settings!.Epochs, info.Settings.Dropout, info.Settings.WeightDecay, info.Settings.AdamBeta2));
        Assert.Equal(0.1, info.Config.HiddenDropout, 12);
        EvalResult scored;
        using (model)
            scored = Evaluator.Evaluate(new ModelScorer(model), data, TaskKind.Rec, Split.Test, Protocols.For(TaskKind.Rec)[0], new EvalOptions(),
                maxPosition: info.Config.MaxPosition);

        var report = await suite.Store.OpenAsync(run["artifacts"]!["report"].Deserialize<ArtifactSetReference>(Json)!);
        var published = JsonNode.Parse(await File.ReadAllTextAsync(report.PathOf("report.json")))!["tasks"]!.AsArray()
            .Single(t => t!["task"]!.GetValue<string>() == "Rec")!["model"]![0]!;
        Assert.True(scored.Examples > 0);
        Assert.Equal(published["examples"]!.GetValue<int>(), scored.Examples);
        Assert.Equal(published["metrics"]!["ndcg@10"]!.GetValue<double>(), scored["ndcg@10"], 6);
        Assert.Equal(published["metrics"]!["recall@10"]!.GetValue<double>(), scored["recall@10"], 6);

        await ServingAnswersWithThePublishedModel(run, bundle, data);
    }

    /// <summary>The published set is the serving bundle (its manifest carries the run's model version), and the
    /// AppHost's Serving service, told by ModelPublished, downloaded it, swapped it in and answers with it.</summary>
    private async Task ServingAnswersWithThePublishedModel(JsonNode run, LocalArtifactSet bundle, LsvcrDataset data)
    {
        var version = run["modelVersion"]!.GetValue<string>();
        Assert.Matches("^[0-9a-f]{16}$", version);
        Assert.Equal(version, JsonNode.Parse(await File.ReadAllTextAsync(bundle.PathOf("manifest.json")))!["model_version"]!.GetValue<string>());
        Assert.Contains(bundle.Manifest.Files, f => f.Path == "rec_encoder.onnx");

        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        JsonNode? model = null;
        while (DateTime.UtcNow < deadline)
        {
            var status = await suite.Serving.GetAsync("/v1/model");
            if (status.IsSuccessStatusCode && (model = JsonNode.Parse(await status.Content.ReadAsStringAsync()))!["model_version"]?.GetValue<string>() == version) break;
            await Task.Delay(500);
        }
        Assert.True(model?["model_version"]?.GetValue<string>() == version, $"serving did not load {version} in 2 min: {model?.ToJsonString() ?? "no model"}");
        Assert.Equal(data.Catalog.PhotoCount - 1, model!["videos"]!.GetValue<int>());

        var history = data.Catalog.PhotoIds.Skip(1).Take(5).ToArray();
        var response = await suite.Serving.PostAsJsonAsync("/v1/recommendations/videos", new { video_history = history, k = 5 });
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{response.StatusCode}: {body}");
        Assert.Equal(version, response.Headers.GetValues("X-Model-Version").Single());
        var answer = JsonNode.Parse(body)!;
        Assert.Equal(version, answer["model_version"]!.GetValue<string>());
        Assert.Null(answer["fallback"]);
        var items = answer["items"]!.AsArray().Select(i => i!["video"]!.GetValue<string>()).ToList();
        Assert.Equal(5, items.Count);
        Assert.Empty(items.Intersect(history)); // exclude_seen
        Assert.All(items, v => Assert.Contains(v, data.Catalog.PhotoIds));
    }

    [Fact]
    public async Task Upload_with_a_broken_json_line_is_rejected_with_the_line_and_stores_nothing()
    {
        var dir = SuiteFixture.TinyDataset(seed: 12);
        var file = Path.Combine(dir, TaskNames.FileName(TaskKind.Rec, Split.Train));
        var lines = File.ReadAllLines(file);
        lines[2] = lines[2][..(lines[2].Length / 2)];
        File.WriteAllLines(file, lines);
        await AssertRejected(SuiteFixture.Zip(dir), $"{Path.GetFileName(file)}:3");
    }

    [Fact]
    public async Task Upload_with_unknown_video_ids_is_rejected_naming_them()
    {
        var dir = SuiteFixture.TinyDataset(seed: 13);
        var file = Path.Combine(dir, TaskNames.FileName(TaskKind.Rec, Split.Test));
        var lines = File.ReadAllLines(file);
        var first = JsonNode.Parse(lines[0])!.AsObject();
        first["target_photo"] = 99_999; // the catalogue has 64 videos
        lines[0] = first.ToJsonString();
        File.WriteAllLines(file, lines);
        var body = await AssertRejected(SuiteFixture.Zip(dir), $"{Path.GetFileName(file)}:1");
        Assert.Contains("99999", body);
    }

    [Fact]
    public async Task Truncated_zip_is_rejected()
    {
        var zip = SuiteFixture.Zip(SuiteFixture.TinyDataset(seed: 14));
        var body = await AssertRejected(zip[..(zip.Length / 2)], "(upload)");
        Assert.Contains("zip", body);
    }

    [Fact]
    public async Task Run_for_an_unknown_dataset_is_404_and_a_request_without_data_is_400()
    {
        var missing = await suite.Api.PostAsJsonAsync("/v1/runs", new { datasetId = "ds-0000000000000000" });
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Contains("ds-0000000000000000", await missing.Content.ReadAsStringAsync());
        var empty = await suite.Api.PostAsJsonAsync("/v1/runs", new { });
        Assert.Equal(HttpStatusCode.BadRequest, empty.StatusCode);
        Assert.Contains("datasetId", await empty.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.NotFound, (await suite.Api.GetAsync($"/v1/runs/{Guid.NewGuid()}")).StatusCode);
        // Training settings are checked at submission with the CLI's messages, each problem by its key.
        var badSettings = await suite.Api.PostAsJsonAsync("/v1/runs", new
        {
            synthetic = new { users = 40, videos = 64, seed = 7 },
            options = new { fineTune = new JsonObject { ["hidden"] = 30, ["heads"] = 4, ["hiden"] = 1 } },
        });
        var badBody = await badSettings.Content.ReadAsStringAsync();
        Assert.True(badSettings.StatusCode == HttpStatusCode.BadRequest, $"{badSettings.StatusCode}: {badBody}");
        var problem = Assert.Single(JsonNode.Parse(badBody)!["errors"]!["options.fineTune"]!.AsArray())!.GetValue<string>();
        Assert.StartsWith("options.fineTune: unknown key \"hiden\"", problem);
        var badShape = await suite.Api.PostAsJsonAsync("/v1/runs", new
        {
            synthetic = new { users = 40, videos = 64, seed = 7 },
            options = new { fineTune = new JsonObject { ["hidden"] = 30, ["heads"] = 4, ["variant"] = "popularity" } },
        });
        var shapeBody = await badShape.Content.ReadAsStringAsync();
        Assert.True(badShape.StatusCode == HttpStatusCode.BadRequest, $"{badShape.StatusCode}: {shapeBody}");
        var errors = JsonNode.Parse(shapeBody)!["errors"]!;
        Assert.Equal("hidden (30) must be divisible by heads (4)", Assert.Single(errors["options.fineTune"]!.AsArray())!.GetValue<string>());
        Assert.Contains("'popularity' is not a trained variant", errors["options.fineTune.variant"]![0]!.GetValue<string>());
        var shapeWithAlignment = await suite.Api.PostAsJsonAsync("/v1/runs", new
        {
            synthetic = new { users = 40, videos = 64, seed = 7 },
            options = new { align = true, fineTune = new JsonObject { ["hidden"] = 32 } },
        });
        var alignBody = await shapeWithAlignment.Content.ReadAsStringAsync();
        Assert.True(shapeWithAlignment.StatusCode == HttpStatusCode.BadRequest, $"{shapeWithAlignment.StatusCode}: {alignBody}");
        Assert.StartsWith("hidden: the model shape comes from the stage-1 alignment weights",
            Assert.Single(JsonNode.Parse(alignBody)!["errors"]!["options.fineTune"]!.AsArray())!.GetValue<string>());
        var openApi = await suite.Api.GetStringAsync("/openapi/v1.json");
        Assert.Contains("/v1/runs/{id}", openApi);
    }

    private async Task<string> AssertRejected(byte[] zip, string expectedKey)
    {
        var before = await DatasetBlobs();
        var response = await Upload(zip);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{response.StatusCode}: {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        Assert.Contains(expectedKey, body);
        Assert.Equal(before, await DatasetBlobs());
        return body;
    }

    private async Task<int> DatasetBlobs()
    {
        var container = new BlobServiceClient(suite.StorageConnection).GetBlobContainerClient("artifacts");
        if (!await container.ExistsAsync()) return 0;
        int n = 0;
        await foreach (var _ in container.GetBlobsAsync(Azure.Storage.Blobs.Models.BlobTraits.None, Azure.Storage.Blobs.Models.BlobStates.None, "datasets/", CancellationToken.None)) n++;
        return n;
    }

    private Task<HttpResponseMessage> Upload(byte[] zip)
    {
        var content = new ByteArrayContent(zip);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        return suite.Api.PostAsync("/v1/datasets", content);
    }

    private async Task<JsonNode> WaitForEnd(string runId, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            // 202 comes back once the start is on the bus; the run exists when the orchestrator has taken it.
            var response = await suite.Api.GetAsync($"/v1/runs/{runId}");
            if (response.StatusCode == HttpStatusCode.NotFound && DateTime.UtcNow < deadline)
            {
                await Task.Delay(500);
                continue;
            }
            response.EnsureSuccessStatusCode();
            var run = (await response.Content.ReadFromJsonAsync<JsonNode>())!;
            if (run["state"]!.GetValue<string>() is "Published" or "Failed") return run;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"run {runId} still {run["state"]} after {timeout}: {run.ToJsonString()}");
            await Task.Delay(1000);
        }
    }
}
