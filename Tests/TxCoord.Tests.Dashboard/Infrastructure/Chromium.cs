using Microsoft.Playwright;

namespace TxCoord.Tests.Dashboard.Infrastructure;

/// <summary>
/// Debian's Chromium driven by Playwright for .NET. Playwright's own browser download is never
/// used: the executable is <see cref="ExecutablePath"/>, which <c>./run.sh test</c> installs when
/// missing. Without it the browser tests fail (they never skip) and say how to install it.
/// </summary>
internal sealed class Chromium : IAsyncDisposable
{
    public const string ExecutablePath = "/usr/bin/chromium";

    /// <summary>Headless, as root, on a closed network: no sandbox, no GPU, no background traffic to Google.</summary>
    public static readonly string[] Arguments =
    [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
    ];

    private readonly IPlaywright _playwright;

    private Chromium(IPlaywright playwright, IBrowser browser)
    {
        _playwright = playwright;
        Browser = browser;
    }

    public IBrowser Browser { get; }

    public static async Task<Chromium> LaunchAsync()
    {
        if (!File.Exists(ExecutablePath))
        {
            Assert.Fail(
                $"Chromium is not installed at {ExecutablePath}: the dashboard's browser tests need Debian's 'chromium' package. " +
                "Install it with 'apt-get install -y chromium' (./run.sh test installs it when it is missing).");
        }

        // The machine is shared: give conditions time rather than fail on a slow moment.
        Assertions.SetDefaultExpectTimeout(20_000);
        var playwright = await Playwright.CreateAsync();
        try
        {
            var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = ExecutablePath,
                Headless = true,
                Args = Arguments,
                Timeout = 60_000,
            });
            return new Chromium(playwright, browser);
        }
        catch
        {
            playwright.Dispose();
            throw;
        }
    }

    /// <summary>A page of its own context, 1440x1000, with a generous default timeout (the machine is shared).</summary>
    public async Task<IPage> NewPageAsync()
    {
        var context = await Browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = 1440, Height = 1000 } });
        context.SetDefaultTimeout(30_000);
        return await context.NewPageAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await Browser.DisposeAsync();
        _playwright.Dispose();
    }
}
