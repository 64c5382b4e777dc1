using System.Security.Cryptography;

namespace LSVCR.Artifacts;

/// <summary>
/// Downloaded artifacts on the local disk, keyed by content hash: <c>objects/ab/abcd…</c> holds a file whose SHA-256 is
/// its name (checked before it is stored), <c>manifests/&lt;content hash&gt;.json</c> a set's manifest, and
/// <c>sets/&lt;content hash&gt;/</c> the set's files under their paths (hard links to <c>objects/</c>, so they look
/// and measure like plain files and cost no space). A file is
/// stored once however many sets hold it, and a worker that has a set opens it again without any request.
/// Every entry is written under a temporary name and renamed into place, so concurrent workers and kills leave
/// only whole entries. Nothing is evicted: a host that needs room deletes the folder (it is only a cache).
/// </summary>
public sealed class ArtifactCache
{
    private const int CopyBuffer = 1 << 20;

    public ArtifactCache(string root)
    {
        Root = Path.GetFullPath(root);
        Directory.CreateDirectory(Path.Combine(Root, "tmp"));
    }

    public string Root { get; }

    /// <summary>Where the cache lives when configuration names none: <c>$XDG_CACHE_HOME/lsvcr/artifacts</c> or <c>~/.cache/lsvcr/artifacts</c>.</summary>
    public static string DefaultRoot
    {
        get
        {
            var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            var baseDir = string.IsNullOrEmpty(xdg) ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache") : xdg;
            return Path.Combine(baseDir, "lsvcr", "artifacts");
        }
    }

    public string ObjectPath(string sha256) => Path.Combine(Root, "objects", sha256[..2], sha256);

    /// <summary>The cached file with this hash and size, or null.</summary>
    public string? TryGetObject(string sha256, long size)
    {
        var path = ObjectPath(sha256);
        var info = new FileInfo(path);
        return info.Exists && info.Length == size ? path : null;
    }

    /// <summary>
    /// Copies <paramref name="content"/> into the cache while hashing it, and keeps it only if hash and size are the
    /// expected ones; otherwise the copy is deleted and an <see cref="ArtifactCorruptException"/> names <paramref name="where"/>.
    /// </summary>
    public async Task<string> AddObjectAsync(Stream content, string sha256, long size, string where, CancellationToken ct)
    {
        var tmp = Path.Combine(Root, "tmp", $"{sha256[..16]}.{Guid.NewGuid():N}");
        try
        {
            string actual;
            long length = 0;
            await using (var file = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, CopyBuffer, FileOptions.Asynchronous))
            using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
            {
                var buffer = new byte[CopyBuffer];
                int n;
                while ((n = await content.ReadAsync(buffer, ct)) > 0)
                {
                    hash.AppendData(buffer, 0, n);
                    await file.WriteAsync(buffer.AsMemory(0, n), ct);
                    length += n;
                }
                actual = Convert.ToHexStringLower(hash.GetHashAndReset());
            }
            if (length != size || actual != sha256)
                throw new ArtifactCorruptException(
                    $"{where}: corrupted artifact: read {length} bytes with SHA-256 {actual}, but the manifest lists {size} bytes with SHA-256 {sha256}; " +
                    "the file was changed after it was published (publish the set again under a new id)");
            var path = ObjectPath(sha256);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.Move(tmp, path, overwrite: true);  // same content whoever wins
            return path;
        }
        finally
        {
            File.Delete(tmp);
        }
    }

    public ArtifactManifest? TryGetManifest(string contentSha256)
    {
        var path = Path.Combine(Root, "manifests", contentSha256 + ".json");
        if (!File.Exists(path)) return null;
        try { return ArtifactManifest.Parse(File.ReadAllBytes(path), path); }
        catch (ArtifactCorruptException) { return null; }  // a damaged cache entry is refetched
    }

    public void AddManifest(ArtifactManifest manifest)
    {
        var dir = Path.Combine(Root, "manifests");
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(Root, "tmp", $"{manifest.ContentSha256[..16]}.{Guid.NewGuid():N}.json");
        File.WriteAllBytes(tmp, manifest.ToJsonBytes());
        File.Move(tmp, Path.Combine(dir, manifest.ContentSha256 + ".json"), overwrite: true);
    }

    /// <summary>The folder of a set whose files are all in <c>objects/</c>: built once, then reused.</summary>
    public string MaterializeSet(ArtifactManifest manifest)
    {
        var dir = Path.Combine(Root, "sets", manifest.ContentSha256);
        if (Directory.Exists(dir)) return dir;
        var tmp = Path.Combine(Root, "tmp", $"set-{manifest.ContentSha256[..16]}.{Guid.NewGuid():N}");
        Directory.CreateDirectory(tmp);
        try
        {
            foreach (var file in manifest.Files)
            {
                var link = Path.Combine(tmp, file.Path.Replace('/', Path.DirectorySeparatorChar));
                Directory.CreateDirectory(Path.GetDirectoryName(link)!);
                var target = TryGetObject(file.Sha256, file.Size)
                             ?? throw new InvalidOperationException($"cache object {file.Sha256} of '{manifest.Set}/{file.Path}' is missing");
                Link(target, link);
            }
            Directory.CreateDirectory(Path.GetDirectoryName(dir)!);
            try { Directory.Move(tmp, dir); }
            catch (IOException) when (Directory.Exists(dir)) { }  // another worker built it first: same content
            return dir;
        }
        finally
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        }
    }

    /// <summary>A hard link (both paths are inside the cache root, one file system); a copy where links are not allowed.</summary>
    private static void Link(string target, string link)
    {
        // .NET has symbolic links only, and a symbolic link reports its own length to FileInfo and dangles if the
        // object goes; libc's link(2) is the whole of what is needed here.
        if (HardLink(target, link) != 0) File.Copy(target, link);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "link", SetLastError = true)]
    private static extern int HardLink([System.Runtime.InteropServices.MarshalAs(System.Runtime.InteropServices.UnmanagedType.LPUTF8Str)] string oldPath,
        [System.Runtime.InteropServices.MarshalAs(System.Runtime.InteropServices.UnmanagedType.LPUTF8Str)] string newPath);
}
