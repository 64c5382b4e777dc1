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

    private string? _contentHash;

    /// <summary>SHA-256 over everything the dataset holds — catalogue ids, texts and comment lists, and every example
    /// set's arrays — so resume and reuse decisions see any change of content (computed once; the dataset is not
    /// modified after loading).</summary>
    public string ContentHash()
    {
        if (_contentHash is not null) return _contentHash;
        using var h = new ContentHash();
        var c = Catalog;
        h.Add("lsvcr dataset 1").Add(c.PhotoIds).Add(c.PhotoTitles).Add(c.PhotoCommentOffsets).Add(c.PhotoComments)
            .Add(c.CommentIds).Add(c.CommentTexts);
        foreach (var s in Sets)
            h.Add($"{s.Task} {s.Split}").Add(s.UserIds).Add(s.TargetPhoto).Add(s.PhotoHistoryOffsets).Add(s.PhotoHistory)
                .Add(s.CommentHistoryOffsets).Add(s.CommentHistoryPhoto).Add(s.CommentEntryOffsets).Add(s.CommentHistoryComments)
                .Add(s.PositiveOffsets).Add(s.PositiveComments);
        return _contentHash = h.Finish();
    }
}
