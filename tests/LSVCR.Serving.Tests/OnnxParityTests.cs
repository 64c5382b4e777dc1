using LSVCR.Modeling;
using LSVCR.Training;
using static TorchSharp.torch;

namespace LSVCR.Serving.Tests;

public sealed class ParityFixture : IDisposable
{
    public TempDir Dir { get; } = new();
    public TestBundle Bundle { get; }
    public ParityFixture() => Bundle = TestBundle.Create(Dir.Path, System.IO.Path.Combine(Dir.Path, "bundles", "a"), 101);
    public void Dispose() => Dir.Dispose();
}

/// <summary>The ONNX encoders under ONNX Runtime against the TorchSharp model in eval mode, on one batch holding an
/// empty, a comments-only, a short, a full (50) and an over-long (70 / 60 entries, 20 comments in some entries) user,
/// and users whose entries hold 1, 16, 17 and 40 distinct comments (every comment of an entry is averaged).</summary>
public sealed class OnnxParityTests(ParityFixture fixture) : IClassFixture<ParityFixture>
{
    private const float Tolerance = 1e-5f;

    private (List<ResolvedHistory> Users, List<(string[] Videos, CommentEntry[] Entries)> Raw) Users(ServingModel model)
    {
        var cat = fixture.Bundle.Catalog;
        string V(int i) => cat.PhotoIds[1 + i % (cat.PhotoCount - 1)];
        CommentEntry E(int i, int comments)
        {
            var video = 1 + i % (cat.PhotoCount - 1);
            var list = cat.CommentsOf(video).ToArray();
            var cs = Enumerable.Range(0, comments).Select(j => cat.CommentIds[list.Length == 0 ? 1 + (i + j) % (cat.CommentCount - 1) : list[j % list.Length]]).ToArray();
            return new CommentEntry(cat.PhotoIds[video], cs);
        }
        var raw = new List<(string[], CommentEntry[])>
        {
            ([], []),
            ([], [E(4, 2), E(6, 0)]),
            ([V(0), V(1), V(2)], [E(3, 3), E(8, 0)]),
            ([.. Enumerable.Range(5, 50).Select(V)], [.. Enumerable.Range(0, 50).Select(i => E(i * 7, 1 + i % 3))]),
            ([.. Enumerable.Range(0, 70).Select(i => V(i * 3))], [.. Enumerable.Range(0, 60).Select(i => E(i * 5, i % 4 == 0 ? 20 : 2))]),
            ([V(9), V(4)], [Distinct(9, 1), Distinct(11, 16), Distinct(13, 17), Distinct(17, 40)]),
            ([], [Distinct(21, 40)]),
            ([V(3)], [Distinct(23, 17), Distinct(29, 1)]),
        };
        return ([.. raw.Select(r => HistoryResolver.Resolve(model, r.Item1, r.Item2))], raw);
    }

    /// <summary>An entry of <paramref name="comments"/> distinct comments from the whole catalogue (not only the video's
    /// six), so dropping any of them would change the mean.</summary>
    private CommentEntry Distinct(int i, int comments)
    {
        var cat = fixture.Bundle.Catalog;
        var video = 1 + i % (cat.PhotoCount - 1);
        return new CommentEntry(cat.PhotoIds[video], [.. Enumerable.Range(0, comments).Select(j => cat.CommentIds[1 + (i * 31 + j * 7) % (cat.CommentCount - 1)])]);
    }

    private static SrBatch TorchBatch(TestBundle b, IReadOnlyList<UserHistory> users, int[] targets)
    {
        var cat = b.Catalog;
        int n = users.Count, lp = Math.Max(1, users.Max(u => u.Videos.Length)), lc = Math.Max(1, users.Max(u => u.EntryVideos.Length));
        int k = Math.Max(1, users.SelectMany(u => u.EntryComments).Select(c => c.Length).DefaultIfEmpty(1).Max());
        var ph = new long[n * lp]; var phc = new long[n * lp]; var ce = new long[n * lc]; var cc = new long[n * lc * k];
        for (int r = 0; r < n; r++)
        {
            var u = users[r];
            for (int j = 0; j < u.Videos.Length; j++)
            {
                ph[r * lp + j] = u.Videos[j];
                var list = cat.CommentsOf(u.Videos[j]);
                phc[r * lp + j] = list.Length == 0 ? 0 : list[0];
            }
            for (int j = 0; j < u.EntryVideos.Length; j++)
            {
                ce[r * lc + j] = u.EntryVideos[j];
                for (int q = 0; q < u.EntryComments[j].Length; q++) cc[(r * lc + j) * k + q] = u.EntryComments[j][q];
            }
        }
        return new SrBatch
        {
            PhotoHistory = tensor(ph, [n, lp]), PhotoHistoryComment = tensor(phc, [n, lp]),
            CommentHistoryPhoto = tensor(ce, [n, lc]), CommentHistoryComments = CommentBags.FromPadded(tensor(cc, [n, lc, k])),
            Target = tensor(targets.Select(t => (long)t).ToArray(), [n]),
        };
    }

    [Fact]
    public void Resolver_keeps_the_most_recent_50_videos_and_entries_and_every_comment_of_an_entry()
    {
        using var model = ServingModel.Load(fixture.Bundle.BundleDir, new ServingOptions());
        var (users, raw) = Users(model);
        var overLong = users[4].History;
        Assert.Equal(raw[4].Videos[^50..].Select(v => model.VideoIndex[v]), overLong.Videos);
        Assert.Equal(raw[4].Entries[^50..].Select(e => model.VideoIndex[e.Video]), overLong.EntryVideos);
        var lastEntry = raw[4].Entries[^4]; // i = 56: 20 comments
        Assert.Equal(20, lastEntry.Comments.Count);
        Assert.Equal(lastEntry.Comments.Select(c => model.CommentIndex[c]), overLong.EntryComments[^4]);
        Assert.Equal(50, users[3].History.Videos.Length);
        Assert.Empty(users[0].History.Videos);
        Assert.Equal([1, 16, 17, 40], users[5].History.EntryComments.Select(c => c.Distinct().Count()));
    }

    [Fact]
    public void Rec_user_vectors_and_full_ranking_top_k_match_TorchSharp()
    {
        using var model = ServingModel.Load(fixture.Bundle.BundleDir, new ServingOptions());
        var (users, _) = Users(model);
        var histories = users.Select(u => u.History).ToList();
        using var onnx = model.EncodeRec(histories);
        using var torchModel = fixture.Bundle.LoadTorch(fixture.Bundle.RecDir);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        torchModel.eval();
        using var batch = TorchBatch(fixture.Bundle, histories, [.. histories.Select(_ => 1)]);
        var (user, _) = torchModel.Encode(batch, TaskKind.Rec);
        var scores = torchModel.ScoreAllVideos(user);
        var t = torchModel.Config.Temperature;
        for (int r = 0; r < histories.Count; r++)
        {
            var expected = user[r].data<float>().ToArray();
            var actual = onnx.User(r).ToArray();
            Assert.Equal(expected.Length, actual.Length);
            for (int j = 0; j < expected.Length; j++)
                Assert.True(MathF.Abs(expected[j] - actual[j]) <= Tolerance, $"user {r}, dim {j}: torch {expected[j]}, onnx {actual[j]}");
            var torchRow = scores[r].data<float>().ToArray();
            var onnxRow = onnx.Scores(r).ToArray();
            onnxRow[0] = float.NegativeInfinity; // the pad column: torch masks it, the engine excludes it
            var top = TopOf(torchRow, 10);
            Assert.Equal(top, TopOf(onnxRow, 10));
            foreach (var v in top)
                Assert.True(Math.Abs((torchRow[v] - onnxRow[v]) * t) <= Tolerance, $"user {r}, video {v}: cosine torch {torchRow[v] * t}, onnx {onnxRow[v] * t}");
        }
        // The batch is not degenerate: users differ.
        Assert.NotEqual(onnx.User(2).ToArray(), onnx.User(3).ToArray());
    }

    [Fact]
    public void CommRank_user_vectors_and_comment_ranking_match_TorchSharp()
    {
        using var model = ServingModel.Load(fixture.Bundle.BundleDir, new ServingOptions());
        var (users, _) = Users(model);
        var histories = users.Select(u => u.History).ToList();
        var cat = fixture.Bundle.Catalog;
        var watched = Enumerable.Range(0, histories.Count).Select(i => Enumerable.Range(1 + i * 5, cat.PhotoCount).Select(v => 1 + (v - 1) % (cat.PhotoCount - 1)).First(v => cat.CommentsOf(v).Length >= 3)).ToArray();
        var onnxUsers = model.EncodeCommRank(histories, watched);
        using var torchModel = fixture.Bundle.LoadTorch(fixture.Bundle.CommRankDir);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        torchModel.eval();
        using var batch = TorchBatch(fixture.Bundle, histories, watched);
        var (user, _) = torchModel.Encode(batch, TaskKind.CommRank);
        var d = model.Hidden;
        for (int r = 0; r < histories.Count; r++)
        {
            var expected = user[r].data<float>().ToArray();
            for (int j = 0; j < d; j++)
                Assert.True(MathF.Abs(expected[j] - onnxUsers[r * d + j]) <= Tolerance, $"user {r}, dim {j}: torch {expected[j]}, onnx {onnxUsers[r * d + j]}");
            var candidates = cat.CommentsOf(watched[r]).ToArray();
            var torchScores = torchModel.ScoreCandidates(user[r].unsqueeze(0), tensor(candidates.Select(c => (long)c).ToArray(), [1, candidates.Length]), TaskKind.CommRank)
                .data<float>().ToArray();
            var onnxScores = candidates.Select(c => System.Numerics.Tensors.TensorPrimitives.Dot(onnxUsers.AsSpan(r * d, d), model.CommentVector(c)) * model.InverseTemperature).ToArray();
            Assert.Equal(TopOf(torchScores, candidates.Length), TopOf(onnxScores, candidates.Length));
            for (int i = 0; i < candidates.Length; i++)
                Assert.True(Math.Abs((torchScores[i] - onnxScores[i]) * torchModel.Config.Temperature) <= Tolerance);
        }
    }

    /// <summary>
    /// The graph's entry mean by hand: comment rows r₁…r₄₀ = m + δᵢ with Σδᵢ = 0 (so their mean is m, while the mean
    /// of any 16 of them is not), fed as the graph's comment table. An entry of those 40 comments must give the same
    /// user vector as an entry of one comment whose row is m; the 16 most recent alone (the old cap) must not.
    /// </summary>
    [Fact]
    public void An_entry_averages_all_its_comments_by_hand()
    {
        var b = fixture.Bundle;
        int c = b.Catalog.CommentCount, d = b.Manifest.Hidden;
        var rng = new Random(3);
        var table = new float[c * d];
        for (int i = 0; i < table.Length; i++) table[i] = (float)(rng.NextDouble() * 2 - 1);
        int single = 1;
        var many = Enumerable.Range(2, 40).ToArray();
        var deltas = new double[many.Length, d];
        for (int j = 0; j < d; j++)
        {
            double mean = 0;
            for (int i = 0; i < many.Length; i++) mean += deltas[i, j] = rng.NextDouble() * 2 - 1;
            mean /= many.Length;
            for (int i = 0; i < many.Length; i++) table[many[i] * d + j] = (float)(table[single * d + j] + deltas[i, j] - mean);
        }
        var scale = Enumerable.Repeat(1f, c).ToArray();
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(System.IO.Path.Combine(b.BundleDir, BundleFiles.RecEncoder));
        float[] Run(long[] comments)
        {
            // One user: history [video 5], one entry (video 7) with these comments, all in slot 0.
            var inputs = new Dictionary<string, Microsoft.ML.OnnxRuntime.OrtValue>
            {
                ["video_history"] = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(new long[] { 5 }, [1, 1]),
                ["entry_videos"] = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(new long[] { 7 }, [1, 1]),
                ["comment_ids"] = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(comments, [comments.Length]),
                ["comment_slots"] = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(new long[comments.Length], [comments.Length]),
                ["comment_table"] = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(table, [c, d]),
                ["comment_scale"] = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(scale, [c, 1]),
            };
            using var runOptions = new Microsoft.ML.OnnxRuntime.RunOptions();
            using var outputs = session.Run(runOptions, inputs, ["user"]);
            foreach (var v in inputs.Values) v.Dispose();
            return outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }
        var byMean = Run([single]);
        var all = Run([.. many.Select(x => (long)x)]);
        var withPads = Run([0, .. many.Select(x => (long)x), 0]); // pad ids count for nothing
        var last16 = Run([.. many[^16..].Select(x => (long)x)]);
        for (int j = 0; j < d; j++)
        {
            Assert.True(MathF.Abs(byMean[j] - all[j]) <= Tolerance, $"dim {j}: mean row {byMean[j]}, 40 comments {all[j]}");
            Assert.True(MathF.Abs(byMean[j] - withPads[j]) <= Tolerance, $"dim {j}: mean row {byMean[j]}, 40 comments + pads {withPads[j]}");
        }
        Assert.True(Enumerable.Range(0, d).Max(j => MathF.Abs(byMean[j] - last16[j])) > 1e-3f, "the last 16 comments alone give the mean of all 40");
    }

    private static int[] TopOf(float[] scores, int k) =>
        [.. Enumerable.Range(0, scores.Length).Where(i => scores.Length != 0).OrderByDescending(i => scores[i]).ThenBy(i => i).Take(k)];
}
