using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace TxCoord.Tests.Crash.Infrastructure;

/// <summary>
/// The RabbitMQ users of a least-privilege deployment (docs/least-privilege.md#rabbitmq), made for
/// one bank system: the coordinator, each bank participant and the initiator log in as their own
/// user, whose permissions cover only its own queues and the inbox exchanges it sends to. The
/// users go to the broker as definitions (<c>rabbitmqctl import_definitions</c>, the format of
/// docker/rabbitmq/definitions.json): no password is ever on a command line.
/// </summary>
internal sealed record BrokerRoles(string Coordinator, string BankA, string BankB, string Initiator)
{
    /// <summary>MassTransit's temporary bus endpoints ({host}_{process}_bus_{id}): every service answers requests there.</summary>
    public const string BusEndpoints = ".*_bus_.*";

    public static BrokerRoles For(string suffix) =>
        new($"lp-{suffix}-coordinator", $"lp-{suffix}-bank-a", $"lp-{suffix}-bank-b", $"lp-{suffix}-initiator");

    /// <summary>Each user's password: its name reversed (test users only; never on a command line).</summary>
    public static string PasswordOf(string user) => new([.. user.Reverse()]);

    /// <summary>The coordinator: its own queue (and _error, _skipped) and inbox; it sends to participants' inboxes and answers on bus endpoints.</summary>
    public static BrokerPermissions CoordinatorPermissions(string coordinatorId)
    {
        var own = $"txcoord-coordinator-{Escape(coordinatorId)}(_error|_skipped)?|txcoord-to-coordinator-{Escape(coordinatorId)}";
        var sends = $"txcoord-to-participant-.*|{BusEndpoints}";
        return new(Anchor($"{own}|{sends}"), Anchor($"{own}|{sends}"), Anchor($"{own}|{BusEndpoints}"));
    }

    /// <summary>A participant: its own queue and inbox; it sends to its coordinator's inbox and (3PC termination) its peers' inboxes.</summary>
    public static BrokerPermissions ParticipantPermissions(string participantId, string coordinatorId)
    {
        var own = $"txcoord-participant-{Escape(participantId)}(_error|_skipped)?|txcoord-to-participant-{Escape(participantId)}";
        var sends = $"txcoord-to-coordinator-{Escape(coordinatorId)}|txcoord-to-participant-.*|{BusEndpoints}";
        return new(Anchor($"{own}|{sends}"), Anchor($"{own}|{sends}"), Anchor($"{own}|{BusEndpoints}"));
    }

    /// <summary>An initiator: no queue but its bus endpoint; it sends work to participants' inboxes and requests to its coordinator's.</summary>
    public static BrokerPermissions InitiatorPermissions(string coordinatorId)
    {
        var sends = $"txcoord-to-coordinator-{Escape(coordinatorId)}|txcoord-to-participant-.*|{BusEndpoints}";
        return new(Anchor(sends), Anchor(sends), Anchor(BusEndpoints));
    }

    /// <summary>The definitions document (users and their permissions on vhost "/") that creates these users.</summary>
    public string Definitions(string coordinatorId, string bankA, string bankB) =>
        DefinitionsOf(
            (Coordinator, CoordinatorPermissions(coordinatorId)),
            (BankA, ParticipantPermissions(bankA, coordinatorId)),
            (BankB, ParticipantPermissions(bankB, coordinatorId)),
            (Initiator, InitiatorPermissions(coordinatorId)));

    /// <summary>Creates the users on the crash services' broker.</summary>
    public Task ApplyAsync(string coordinatorId, string bankA, string bankB) => ImportAsync(Definitions(coordinatorId, bankA, bankB));

    /// <summary>Imports a definitions document into the crash services' broker (through a file the broker's user can read).</summary>
    public static async Task ImportAsync(string definitions)
    {
        var file = Path.Combine(Path.GetTempPath(), $"txcoord-broker-users-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(file, definitions);
        try
        {
            // The broker runs as the rabbitmq user: it must be able to read the file.
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            }

            await CrashServices.RabbitMqCtlAsync("import_definitions", file);
        }
        finally
        {
            File.Delete(file);
        }
    }

    public async Task DeleteAsync()
    {
        foreach (var user in new[] { Coordinator, BankA, BankB, Initiator })
        {
            await CrashServices.RabbitMqCtlAsync("delete_user", user);
        }
    }

    /// <summary>A definitions document of <paramref name="users"/>, each with its password (<see cref="PasswordOf"/>) hashed the way RabbitMQ stores it.</summary>
    public static string DefinitionsOf(params (string User, BrokerPermissions Permissions)[] users) =>
        JsonSerializer.Serialize(new
        {
            users = users.Select(u => new { name = u.User, password_hash = PasswordHash(PasswordOf(u.User)), hashing_algorithm = "rabbit_password_hashing_sha256", tags = Array.Empty<string>() }),
            permissions = users.Select(u => new { user = u.User, vhost = "/", configure = u.Permissions.Configure, write = u.Permissions.Write, read = u.Permissions.Read }),
        }, new JsonSerializerOptions { WriteIndented = true });

    /// <summary>RabbitMQ's rabbit_password_hashing_sha256: base64(salt ++ SHA-256(salt ++ password)), a 4-byte salt.</summary>
    public static string PasswordHash(string password)
    {
        var salt = RandomNumberGenerator.GetBytes(4);
        byte[] salted = [.. salt, .. Encoding.UTF8.GetBytes(password)];
        return Convert.ToBase64String([.. salt, .. SHA256.HashData(salted)]);
    }

    private static string Escape(string id) => Regex.Escape(id);

    private static string Anchor(string alternatives) => $"^({alternatives})$";
}

/// <summary>A user's permissions on a vhost: regular expressions over queue and exchange names.</summary>
internal sealed record BrokerPermissions(string Configure, string Write, string Read);
