//! `--help` texts and usage lines.

use super::args::Kind;

/// The one-line usage for `kind`.
pub(crate) fn usage(kind: Kind) -> &'static str {
    match kind {
        Kind::Pub => {
            "Usage: tinsel pub {[-h host] [-p port] [-u username [-P password]] -t topic | -L URL} {-m message | -f file | -s | -l | -n} [options]"
        }
        Kind::Sub => {
            "Usage: tinsel sub {[-h host] [-p port] [-u username [-P password]] -t topic ... | -L URL [-t topic ...]} [options]"
        }
        Kind::Rr => {
            "Usage: tinsel rr {[-h host] [-p port] [-u username [-P password]] -t topic | -L URL} -e response-topic {-m message | -f file | -s | -n} [options]"
        }
    }
}

const CONNECTION: &str = "\
Connection:
  -h HOST            broker host (default: localhost)
  -p PORT            broker port (default: 1883, 8883 with TLS)
  -L URL             mqtt(s)://[user[:password]@]host[:port]/topic, or
                     ws(s)://[user[:password]@]host[:port][/path] (MQTT over WebSocket on
                     path, default /mqtt; give the topic with -t)
  --unix PATH        connect through a Unix domain socket
  -A ADDRESS         bind the outgoing socket to this local address
  --nodelay          disable Nagle's algorithm
  -V VERSION         protocol: 5 (mqttv5), 311 (mqttv311, default), 31 (mqttv31)
  -i ID              client id (default: assigned by the broker)
  -I PREFIX          client id: PREFIX followed by the process id
  -k SECONDS         keep alive (default 60; 0 turns it off, else 5 to 65535)
  -c                 persistent session (clean session off); needs -i or -I
  -x SECONDS         MQTT 5 session expiry interval (-1: never expires)
  -u USER            user name
  -P PASSWORD        password
  -D CMD PROP VALUE  MQTT 5 property for connect, publish, subscribe, unsubscribe,
                     disconnect or will (user-property takes NAME VALUE)

Will:
  --will-topic TOPIC     the will's topic
  --will-payload TEXT    the will's payload (default: empty)
  --will-qos QOS         the will's QoS
  --will-retain          retain the will

TLS:
  --cafile FILE      trusted CA certificates (PEM)
  --capath DIR       directory of trusted CA certificates
  --tls-use-os-certs trust the system's CA bundle
  --cert FILE        client certificate (PEM)
  --key FILE         client private key (PEM)
  --insecure         do not check the server's host name (testing only)
  --tls-version V    tlsv1.3 or tlsv1.2
  --tls-alpn PROTO   ALPN protocol to offer

Output and diagnostics:
  -d                 print every packet sent and received
  --quiet            do not print error messages
  --help             this help
";

const PUB: &str = "\
tinsel pub: publish a message to an MQTT broker and exit (like mosquitto_pub).

Message (exactly one):
  -t TOPIC           topic to publish to
  -m MESSAGE         the message
  -f FILE            send the contents of FILE
  -s                 send all of standard input as one message
  -l                 send each line of standard input as a message (QoS 1/2 keep going
                     past 65,535 messages)
  -n                 send an empty message
  -q QOS             0, 1 or 2 (default 0)
  -r                 retain the message
  --repeat N         publish the message N times
  --repeat-delay S   seconds between repeats (fractions allowed)
  -M N               at most N QoS 1/2 messages in flight (default 20)

";

const SUB: &str = "\
tinsel sub: subscribe to topics and print the messages (like mosquitto_sub).

Subscription:
  -t FILTER          topic filter to subscribe to (repeatable)
  -q QOS             maximum QoS of the subscription (default 0)
  -T FILTER          do not print messages on topics matching FILTER (repeatable)
  -U FILTER          unsubscribe from FILTER after subscribing (repeatable)
  -R                 do not print retained (stale) messages
  --retained-only    print only retained messages, exit at the first live one
  --remove-retained  clear every retained message received
  --retain-as-published  keep the retain flag on forwarded messages (MQTT 5)
  --nolocal          do not receive own messages (MQTT 5)
  -C COUNT           exit after COUNT messages
  -E                 exit once the subscriptions are acknowledged
  -W SECONDS         exit with code 27 after SECONDS
  --random-filter P  print only P percent of the messages

Printing:
  -v                 print `topic payload`
  -N                 no newline after each message
  -F FORMAT          custom format: %t topic, %p payload, %x/%X hex payload, %l length,
                     %m message id, %q QoS, %r retain, %I ISO-8601 time, %U Unix time,
                     %j/%J JSON, %A %C %D %E %F %P %R %S MQTT 5 properties, @X strftime,
                     @N nanoseconds, \\n \\t \\0 \\e \\a escapes, %[-0][width][.precision]
  --pretty           indent %j/%J JSON output

";

const RR: &str = "\
tinsel rr: publish a request and print the response (like mosquitto_rr; MQTT 5 by default).

Request and response:
  -t TOPIC           request topic
  -e TOPIC           response topic to subscribe to and name in the request
  -m MESSAGE | -f FILE | -s | -n   the request payload
  -q QOS             QoS of the request and the subscription
  -W SECONDS         give up after SECONDS (exit code 27)
  -R                 ignore retained responses
  -v, -N, -F FORMAT, --pretty      print the response like tinsel sub

";

/// The full `--help` text: what it is, the usage line, then the options by group.
pub(crate) fn help(kind: Kind) -> String {
    let head = match kind {
        Kind::Pub => PUB,
        Kind::Sub => SUB,
        Kind::Rr => RR,
    };
    let (title, body) = head.split_once('\n').unwrap_or((head, ""));
    let connection = if kind == Kind::Rr {
        CONNECTION
            .replace("311 (mqttv311, default)", "311 (mqttv311)")
            .replace("protocol: 5 (mqttv5)", "protocol: 5 (mqttv5, default)")
    } else {
        CONNECTION.to_string()
    };
    format!(
        "{title}\n\n{}\n{body}{connection}\nDefaults are read first from $XDG_CONFIG_HOME/tinsel/{} (one option per line).\n",
        usage(kind),
        kind.name()
    )
}
