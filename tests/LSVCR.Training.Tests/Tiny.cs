using LSVCR.Data;

namespace LSVCR.Training.Tests;

/// <summary>
/// A hand-made dataset small enough to compute expected values by hand. Videos 1–4; comments per video in popularity
/// order: v1 [1,2,3,4], v2 [5], v3 [], v4 [6,7].
/// Rec train targets 2, 2, 1 (popularity: v2 = 2, v1 = 1, v3 = v4 = 0); Rec test targets 2, 3, 1.
/// CommRank test: watching v1 with positive 3; watching v4 with positives 6 and 7.
/// </summary>
public static class Tiny
{
    public static Catalog Catalog() => new(
        [LSVCR.Data.Catalog.PadId, "v1", "v2", "v3", "v4"], ["", "cats jump", "dogs run", "cars race", "cats sleep"],
        [0, 0, 4, 5, 5, 7], [1, 2, 3, 4, 5, 6, 7],
        [LSVCR.Data.Catalog.PadId, "c1", "c2", "c3", "c4", "c5", "c6", "c7"], ["", "a", "b", "c", "d", "e", "f", "g"]);

    private static readonly (int, IReadOnlyList<int>)[] History = [(1, [2, 3]), (4, [6])];

    public static LsvcrDataset Dataset()
    {
        var recTrain = new ExampleSetBuilder(TaskKind.Rec, Split.Train);
        recTrain.Add("a", 2, [1, 3], History);
        recTrain.Add("b", 2, [4], []);
        recTrain.Add("c", 1, [3, 4], History);
        var recTest = new ExampleSetBuilder(TaskKind.Rec, Split.Test);
        recTest.Add("a", 2, [1, 3], History);
        recTest.Add("b", 3, [4], []);
        recTest.Add("c", 1, [3, 4], History);
        var crTest = new ExampleSetBuilder(TaskKind.CommRank, Split.Test);
        crTest.Add("a", 1, [2], History, [3]);
        crTest.Add("b", 4, [2], [], [6, 7]);
        return new LsvcrDataset(Catalog(), [recTrain.Build(), recTest.Build(), crTest.Build()]);
    }
}
