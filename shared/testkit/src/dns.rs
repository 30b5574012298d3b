//! [`DnsTestServer`]: a name server on loopback, over UDP and TCP on one port, that
//! answers from a table the test fills: TXT records by name, NXDOMAIN for any other
//! name. It can be told to fail (SERVFAIL) or to fall silent, as a broken or
//! unreachable name server does. Messages are read and written with hickory-proto,
//! the resolver's own codec, so a resolver meets real DNS on the wire.

use hickory_proto::op::{Edns, Message, MessageType, Metadata, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// How the server treats every query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsBehaviour {
    /// From the table: its TXT records, NODATA for another type, NXDOMAIN for an
    /// unknown name.
    Answer,
    /// SERVFAIL, as a name server that cannot resolve does.
    ServerFailure,
    /// Nothing at all: the query is read and never answered.
    Silent,
}

/// The TTL of the records served.
const TTL: u32 = 60;

#[derive(Default)]
struct Zone {
    /// Lower-case names without the trailing dot → records, each its character-strings.
    txt: HashMap<String, Vec<Vec<String>>>,
}

struct Shared {
    zone: Mutex<Zone>,
    behaviour: Mutex<DnsBehaviour>,
    queries: AtomicUsize,
}

impl Shared {
    fn zone(&self) -> MutexGuard<'_, Zone> {
        self.zone
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn behaviour(&self) -> DnsBehaviour {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A name server on `127.0.0.1`, stopped when dropped.
pub struct DnsTestServer {
    address: SocketAddr,
    shared: Arc<Shared>,
    udp: JoinHandle<()>,
    tcp: JoinHandle<()>,
}

impl DnsTestServer {
    /// Starts answering on a free port of 127.0.0.1 (the same for UDP and TCP).
    pub async fn start() -> Self {
        let (udp_socket, tcp_listener) = bind_pair().await;
        let address = udp_socket
            .local_addr()
            .expect("a bound socket has an address");
        let shared = Arc::new(Shared {
            zone: Mutex::new(Zone::default()),
            behaviour: Mutex::new(DnsBehaviour::Answer),
            queries: AtomicUsize::new(0),
        });
        let udp = tokio::spawn(serve_udp(udp_socket, shared.clone()));
        let tcp = tokio::spawn(serve_tcp(tcp_listener, shared.clone()));
        Self {
            address,
            shared,
            udp,
            tcp,
        }
    }

    /// Where to send queries (UDP or TCP).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Adds a TXT record with `value` at `name`; a value longer than a DNS
    /// character-string (255 bytes) is split into several, as DNS consoles do.
    pub fn publish(&self, name: &str, value: &str) {
        let strings = value
            .as_bytes()
            .chunks(255)
            .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
            .collect();
        self.publish_strings_owned(name, strings);
    }

    /// Adds a TXT record made of these character-strings at `name`.
    pub fn publish_strings(&self, name: &str, strings: &[&str]) {
        self.publish_strings_owned(name, strings.iter().map(|s| (*s).to_owned()).collect());
    }

    fn publish_strings_owned(&self, name: &str, strings: Vec<String>) {
        self.shared
            .zone()
            .txt
            .entry(normalize(name))
            .or_default()
            .push(strings);
    }

    /// Removes every record at `name`: it answers NXDOMAIN again.
    pub fn unpublish(&self, name: &str) {
        self.shared.zone().txt.remove(&normalize(name));
    }

    pub fn set_behaviour(&self, behaviour: DnsBehaviour) {
        *self
            .shared
            .behaviour
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = behaviour;
    }

    /// How many queries arrived (answered or not).
    pub fn queries(&self) -> usize {
        self.shared.queries.load(Ordering::SeqCst)
    }
}

impl Drop for DnsTestServer {
    fn drop(&mut self) {
        self.udp.abort();
        // Its connections live in the task's JoinSet and end with it.
        self.tcp.abort();
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A UDP socket and a TCP listener on the same free loopback port.
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("a loopback UDP port can be bound");
        let address = udp.local_addr().expect("a bound socket has an address");
        // The TCP port of the same number may be taken: then another pair.
        if let Ok(tcp) = TcpListener::bind(address).await {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let Ok((length, peer)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        if let Some(reply) = answer(&shared, &buffer[..length]) {
            // A reply that does not get out is a lost datagram, as on a real network.
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(serve_connection(stream, shared.clone()));
                }
            }
            // Reaps finished connections; never ends the loop.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// DNS over TCP: each message preceded by its length in two bytes (RFC 1035 4.2.2).
async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    loop {
        let mut length = [0u8; 2];
        if stream.read_exact(&mut length).await.is_err() {
            return;
        }
        let mut message = vec![0u8; usize::from(u16::from_be_bytes(length))];
        if stream.read_exact(&mut message).await.is_err() {
            return;
        }
        let Some(reply) = answer(&shared, &message) else {
            continue;
        };
        let Ok(reply_length) = u16::try_from(reply.len()) else {
            return;
        };
        if stream.write_all(&reply_length.to_be_bytes()).await.is_err()
            || stream.write_all(&reply).await.is_err()
        {
            return;
        }
    }
}

/// The reply to one query, or nothing (unreadable, or the server is silent).
fn answer(shared: &Shared, query: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    shared.queries.fetch_add(1, Ordering::SeqCst);
    let behaviour = shared.behaviour();
    if behaviour == DnsBehaviour::Silent {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.metadata.authoritative = true;
    response.metadata.recursion_available = true;
    response.add_queries(request.queries.clone());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        response.set_edns(edns);
    }
    if behaviour == DnsBehaviour::ServerFailure {
        response.metadata.response_code = ResponseCode::ServFail;
        return response.to_vec().ok();
    }
    let zone = shared.zone();
    for question in &request.queries {
        let name = normalize(&question.name().to_ascii());
        match zone.txt.get(&name) {
            None => response.metadata.response_code = ResponseCode::NXDomain,
            Some(records) if question.query_type() == RecordType::TXT => {
                for strings in records {
                    response.add_answer(Record::from_rdata(
                        Name::clone(question.name()),
                        TTL,
                        RData::TXT(TXT::new(strings.clone())),
                    ));
                }
            }
            // The name exists, without records of that type (NODATA).
            Some(_) => {}
        }
    }
    response.to_vec().ok()
}
