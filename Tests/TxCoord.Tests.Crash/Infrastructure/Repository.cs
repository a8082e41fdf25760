using System.Reflection;

namespace TxCoord.Tests.Crash.Infrastructure;

/// <summary>Where the repository and the built programs under test are.</summary>
internal static class Repository
{
    private static readonly Lazy<string> LazyRoot = new(FindRoot);

    /// <summary>The directory holding TxCoord.sln.</summary>
    public static string Root => LazyRoot.Value;

    /// <summary>Debug or Release: the configuration this test assembly was built with, and so the programs it runs.</summary>
    public static string Configuration =>
        typeof(Repository).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";

    public static string CoordinatorHost => Program("Coordinator/TxCoord.Coordinator.Host", "TxCoord.Coordinator.Host");

    public static string BankParticipant => Program("samples/Bank/TxCoord.Samples.Bank.Participant", "TxCoord.Samples.Bank.Participant");

    public static string HostileProbe => Program("samples/Bank/TxCoord.Samples.Bank.Hostile", "TxCoord.Samples.Bank.Hostile");

    public static string ServicesScript => Path.Combine(Root, "scripts", "services.sh");

    /// <summary>The dll of a project built with this configuration; fails the test, saying how to build it, when missing.</summary>
    public static string Program(string projectDirectory, string assemblyName)
    {
        var path = Path.Combine(Root, projectDirectory, "bin", Configuration, "net10.0", assemblyName + ".dll");
        if (!File.Exists(path))
        {
            Assert.Fail($"{path} is missing: build the solution first (dotnet build TxCoord.sln -c {Configuration}).");
        }

        return path;
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "TxCoord.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"TxCoord.sln not found above {TestContext.CurrentContext.TestDirectory}.");
    }
}
