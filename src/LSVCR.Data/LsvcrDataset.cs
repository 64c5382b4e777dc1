namespace LSVCR.Data;

/// <summary>A whole dataset in memory: the catalogue and the six example sets (two tasks × three splits).</summary>
public sealed class LsvcrDataset
{
    private readonly Dictionary<(TaskKind, Split), ExampleSet> _sets;

    public LsvcrDataset(Catalog catalog, IEnumerable<ExampleSet> sets)
    {
        Catalog = catalog;
        _sets = [];
        foreach (var s in sets) _sets[(s.Task, s.Split)] = s;
        foreach (var task in Enum.GetValues<TaskKind>())
            foreach (var split in Enum.GetValues<Split>())
                _sets.TryAdd((task, split), ExampleSet.Empty(task, split));
    }

    public Catalog Catalog { get; }

    public ExampleSet this[TaskKind task, Split split] => _sets[(task, split)];

    public IEnumerable<ExampleSet> Sets => _sets.Values.OrderBy(s => s.Task).ThenBy(s => s.Split);
}
