using System.Collections;
using System.Globalization;
using System.Numerics;
using Razorvine.Pickle;

namespace LSVCR.Data;

/// <summary>
/// The <c>all_photos.pkl</c> / <c>all_comments.pkl</c> id lists: a pickled Python list whose index is the internal id.
/// Ids are kept in their string form (MODEL.md §1.1); on writing, a list whose ids are all canonical integers is
/// written as Python ints so the reference code, which looks JSON ids up in these lists, sees matching types.
/// </summary>
internal static class IdLists
{
    public static string[]? Read(string path, string file, List<DatasetProblem> problems)
    {
        if (!File.Exists(path))
        {
            problems.Add(new(file, null, "file is missing (required)"));
            return null;
        }
        object loaded;
        try
        {
            using var unpickler = new Unpickler();
            loaded = unpickler.loads(File.ReadAllBytes(path));
        }
        // The unpickler signals corrupt input with many exception types (its own, InvalidCast, EndOfStream, …).
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            problems.Add(new(file, null, $"not a readable pickle: {e.Message}"));
            return null;
        }
        if (loaded is not IList list)
        {
            problems.Add(new(file, null, $"expected a pickled list of ids, found {loaded?.GetType().Name ?? "None"}"));
            return null;
        }
        var ids = new string[list.Count];
        var firstAt = new Dictionary<string, int>(list.Count, StringComparer.Ordinal);
        bool ok = true;
        for (int i = 0; i < list.Count; i++)
        {
            string? id = list[i] switch
            {
                string s => s,
                int n => n.ToString(CultureInfo.InvariantCulture),
                long n => n.ToString(CultureInfo.InvariantCulture),
                BigInteger n => n.ToString(CultureInfo.InvariantCulture),
                _ => null,
            };
            if (id is null)
            {
                problems.Add(new(file, null, $"entry {i} is a {list[i]?.GetType().Name ?? "None"}, not an int or str id"));
                ok = false;
                continue;
            }
            ids[i] = id;
            if (!firstAt.TryAdd(id, i))
            {
                problems.Add(new(file, null, $"duplicate id '{id}' at index {i} (first at index {firstAt[id]})"));
                ok = false;
            }
        }
        if (ids.Length == 0 || ids[0] != Catalog.PadId)
        {
            problems.Add(new(file, null, $"index 0 must be the pad entry '{Catalog.PadId}'"));
            ok = false;
        }
        return ok ? ids : null;
    }

    public static void Write(string path, string[] ids)
    {
        bool numeric = AllCanonicalIntegers(ids);
        var list = new ArrayList(ids.Length);
        for (int i = 0; i < ids.Length; i++)
            list.Add(numeric && i > 0 ? long.Parse(ids[i], CultureInfo.InvariantCulture) : ids[i]);
        using var pickler = new Pickler(); // writes protocol 2, readable by every Python 3
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        pickler.dump(list, stream);
    }

    /// <summary>True when every non-pad id prints back identically as a 64-bit integer ("12", not "012" or "1e3").</summary>
    public static bool AllCanonicalIntegers(IReadOnlyList<string> ids)
    {
        for (int i = 1; i < ids.Count; i++)
            if (!IsCanonicalInteger(ids[i])) return false;
        return true;
    }

    public static bool IsCanonicalInteger(string id) =>
        long.TryParse(id, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long n)
        && n.ToString(CultureInfo.InvariantCulture) == id;
}
