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
/// empty, a comments-only, a short, a full (50) and an over-long (70 / 60 entries, 20 comments in some entries) user.</summary>
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
        };
        return ([.. raw.Select(r => HistoryResolver.Resolve(model, r.Item1, r.Item2))], raw);
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
    public void Resolver_keeps_the_most_recent_50_videos_and_entries_and_16_comments_per_entry()
    {
        using var model = ServingModel.Load(fixture.Bundle.BundleDir, new ServingOptions());
        var (users, raw) = Users(model);
        var overLong = users[4].History;
        Assert.Equal(raw[4].Videos[^50..].Select(v => model.VideoIndex[v]), overLong.Videos);
        Assert.Equal(raw[4].Entries[^50..].Select(e => model.VideoIndex[e.Video]), overLong.EntryVideos);
        var lastEntry = raw[4].Entries[^4]; // i = 56: 20 comments
        Assert.Equal(20, lastEntry.Comments.Count);
        Assert.Equal(lastEntry.Comments.Skip(4).Select(c => model.CommentIndex[c]), overLong.EntryComments[^4]);
        Assert.Equal(50, users[3].History.Videos.Length);
        Assert.Empty(users[0].History.Videos);
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

    private static int[] TopOf(float[] scores, int k) =>
        [.. Enumerable.Range(0, scores.Length).Where(i => scores.Length != 0).OrderByDescending(i => scores[i]).ThenBy(i => i).Take(k)];
}
