//! Every subscription in one topic tree, and which subscribers a message goes to.
//!
//! A message goes once to each client with a matching ordinary subscription (overlapping
//! subscriptions of one client merge into one delivery at the highest QoS, carrying every
//! subscription identifier), and once to one member of each matching shared subscription
//! group `$share/{group}/{filter}` (round robin, preferring connected members).
//!
//! Each session also lists its own filters (see [`crate::session::FilterList`]), so that
//! ending a session removes exactly its entries.

use std::collections::HashMap;
use std::sync::Arc;

use tinsel_codec::QoS;
use tinsel_codec::topic::parse_shared;

use crate::FastMap;
use crate::session::SubEntry;
use crate::topic_tree::TopicTree;

/// Up to this many distinct subscribers per message, overlapping subscriptions are merged by
/// a linear scan; beyond it, by a map.
const LINEAR_TARGETS: usize = 16;

/// Topics whose subscribers are remembered (see `Subscriptions::cache`); when full, no
/// more are until the next change of the tree empties it.
const CACHED_TOPICS: usize = 4096;

/// Subscribers remembered for one topic beyond which a topic is not cached (its list is
/// cheaper to find again than to keep).
const CACHED_TARGETS: usize = 256;

/// A shared subscription: (group, filter).
type GroupKey = (Arc<str>, Arc<str>);

/// The key of a subscription in the topic tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum SubKey {
    /// An ordinary subscription of this client.
    Client(Arc<str>),
    /// A member of shared subscription `$share/{group}/{filter}` (boxed: every key in the
    /// tree is as big as the biggest kind, and most subscriptions are ordinary ones).
    Shared(Box<SharedMember>),
}

/// A member of a shared subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SharedMember {
    /// The share name.
    group: Arc<str>,
    /// The filter after the group.
    filter: Arc<str>,
    /// The member.
    client: Arc<str>,
}

/// One subscriber a message goes to, with what its subscriptions asked for.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) client: Arc<str>,
    /// The highest QoS of its matching subscriptions (the message's own QoS caps it).
    pub(crate) qos: QoS,
    pub(crate) retain_as_published: bool,
    /// Subscription identifiers of its matching subscriptions.
    pub(crate) ids: Vec<u32>,
}

/// Where a message goes.
#[derive(Debug, Default)]
pub(crate) struct Matches {
    /// Subscribers by ordinary subscriptions.
    pub(crate) targets: Vec<Target>,
    /// The member chosen in each matching shared subscription group.
    pub(crate) shared: Vec<Target>,
}

/// The subscription tree and the shared groups' round robin.
#[derive(Default)]
pub(crate) struct Subscriptions {
    tree: TopicTree<SubKey, SubEntry>,
    /// Round-robin position per shared subscription (group, filter).
    shared_next: HashMap<GroupKey, usize>,
    /// Where the messages of recently routed topics went: a device that publishes to its
    /// topic again finds its subscribers with one lookup instead of a walk of the tree and
    /// a merge. Only topics that matched no shared subscription and no No Local one are
    /// kept (their targets do not depend on the publisher or on who is online); any
    /// SUBSCRIBE or UNSUBSCRIBE that changes the tree drops it. Bounded by
    /// [`CACHED_TOPICS`] topics of at most [`CACHED_TARGETS`] targets.
    cache: FastMap<Box<str>, Vec<Target>>,
    /// The targets list of the last message, given back empty by [`Subscriptions::recycle`]:
    /// routing a message allocates no list. Its capacity is bounded by the most subscribers
    /// one message had.
    spare: Vec<Target>,
}

/// The tree filter and key of a subscription filter as the client wrote it.
fn sub_key<'a>(filter: &'a str, client: &Arc<str>) -> (&'a str, SubKey) {
    match parse_shared(filter) {
        Some((group, inner)) => (
            inner,
            SubKey::Shared(Box::new(SharedMember {
                group: Arc::from(group),
                filter: Arc::from(inner),
                client: client.clone(),
            })),
        ),
        None => (filter, SubKey::Client(client.clone())),
    }
}

impl Subscriptions {
    /// Adds or replaces `client`'s subscription to `filter`; true if it existed.
    pub(crate) fn insert(&mut self, filter: &str, client: &Arc<str>, entry: SubEntry) -> bool {
        let (tree_filter, key) = sub_key(filter, client);
        self.forget_routes();
        self.tree.insert(tree_filter, key, entry).is_some()
    }

    /// The tree changes: the remembered routes may be wrong.
    fn forget_routes(&mut self) {
        if !self.cache.is_empty() {
            self.cache.clear();
        }
    }

    /// Removes `client`'s subscription to `filter`; true if it existed.
    pub(crate) fn remove(&mut self, filter: &str, client: &Arc<str>) -> bool {
        let (tree_filter, key) = sub_key(filter, client);
        let removed = self.tree.remove(tree_filter, &key).is_some();
        if removed {
            self.forget_routes();
        }
        removed
    }

    /// Subscriptions in the tree.
    pub(crate) fn len(&self) -> usize {
        self.tree.len()
    }

    /// Where a message on `topic` goes. `publisher` is skipped where its subscription says
    /// No Local; `online` tells connected shared-group members from offline ones.
    pub(crate) fn matches(
        &mut self,
        topic: &str,
        publisher: Option<&Arc<str>>,
        online: impl Fn(&Arc<str>) -> bool,
    ) -> Matches {
        let mut targets = std::mem::take(&mut self.spare);
        targets.clear();
        if let Some(known) = self.cache.get(topic) {
            targets.extend_from_slice(known);
            return Matches {
                targets,
                shared: Vec::new(),
            };
        }
        let mut index: FastMap<Arc<str>, usize> = FastMap::default();
        let mut groups: FastMap<GroupKey, Vec<(Arc<str>, SubEntry)>> = FastMap::default();
        let mut no_local = false;
        self.tree.for_each_match(topic, |key, entry| match key {
            SubKey::Client(client) => {
                no_local |= entry.options.no_local;
                if entry.options.no_local && publisher == Some(client) {
                    return;
                }
                // Few targets: a linear scan; many: a map, built once past the threshold.
                let found = if targets.len() <= LINEAR_TARGETS {
                    targets.iter().position(|t| t.client == *client)
                } else {
                    if index.is_empty() {
                        let all = targets.iter().enumerate();
                        index.extend(all.map(|(i, t)| (t.client.clone(), i)));
                    }
                    index.get(client).copied()
                };
                let i = found.unwrap_or_else(|| {
                    targets.push(Target {
                        client: client.clone(),
                        qos: QoS::AtMostOnce,
                        retain_as_published: false,
                        ids: Vec::new(),
                    });
                    if !index.is_empty() {
                        index.insert(client.clone(), targets.len() - 1);
                    }
                    targets.len() - 1
                });
                let t = &mut targets[i];
                t.qos = t.qos.max(entry.options.qos);
                t.retain_as_published |= entry.options.retain_as_published;
                t.ids.extend(entry.id);
            }
            SubKey::Shared(m) => groups
                .entry((m.group.clone(), m.filter.clone()))
                .or_default()
                .push((m.client.clone(), *entry)),
        });
        // Once full, the cache keeps what it has (still right until the tree changes): a
        // broker with many more topics than that pays a failed lookup, not an insertion
        // per message.
        if !no_local
            && groups.is_empty()
            && targets.len() <= CACHED_TARGETS
            && self.cache.len() < CACHED_TOPICS
        {
            self.cache.insert(Box::from(topic), targets.clone());
        }
        let mut shared = Vec::with_capacity(groups.len());
        for (group, mut members) in groups {
            // Round robin over the members, in a stable order, preferring connected ones.
            members.sort_by(|a, b| a.0.cmp(&b.0));
            let n = members.len();
            let start = *self.shared_next.get(&group).unwrap_or(&0) % n;
            let chosen = (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| online(&members[i].0))
                .unwrap_or(start);
            self.shared_next.insert(group, chosen + 1);
            let (client, entry) = members.swap_remove(chosen);
            shared.push(Target {
                client,
                qos: entry.options.qos,
                retain_as_published: entry.options.retain_as_published,
                ids: entry.id.into_iter().collect(),
            });
        }
        Matches { targets, shared }
    }

    /// Gives back the targets list of [`Subscriptions::matches`] for the next message.
    pub(crate) fn recycle(&mut self, mut targets: Vec<Target>) {
        targets.clear();
        self.spare = targets;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(qos: QoS, no_local: bool) -> SubEntry {
        SubEntry {
            options: tinsel_codec::SubscriptionOptions {
                qos,
                no_local,
                ..Default::default()
            },
            id: None,
        }
    }

    fn clients(subs: &mut Subscriptions, topic: &str, publisher: Option<&Arc<str>>) -> Vec<String> {
        let m = subs.matches(topic, publisher, |_| true);
        let mut out: Vec<String> = m
            .targets
            .iter()
            .map(|t| format!("{}@{}", t.client, t.qos.as_u8()))
            .collect();
        out.extend(m.shared.iter().map(|t| format!("shared:{}", t.client)));
        subs.recycle(m.targets);
        out.sort();
        out
    }

    #[test]
    fn remembered_routes_follow_every_change_of_the_tree() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut subs = Subscriptions::default();
        subs.insert("t/+", &a, entry(QoS::AtMostOnce, false));
        assert_eq!(clients(&mut subs, "t/1", None), ["a@0"]);
        assert_eq!(subs.cache.len(), 1, "remembered");
        assert_eq!(clients(&mut subs, "t/1", None), ["a@0"]);
        // A new subscription, a changed one, a removed one: each is seen at once.
        subs.insert("t/#", &b, entry(QoS::AtLeastOnce, false));
        assert_eq!(clients(&mut subs, "t/1", None), ["a@0", "b@1"]);
        subs.insert("t/+", &a, entry(QoS::ExactlyOnce, false));
        assert_eq!(clients(&mut subs, "t/1", None), ["a@2", "b@1"]);
        subs.remove("t/#", &b);
        assert_eq!(clients(&mut subs, "t/1", None), ["a@2"]);
        // Not remembered: No Local (depends on the publisher) and shared groups (round robin).
        subs.insert("n/1", &a, entry(QoS::AtMostOnce, true));
        assert_eq!(clients(&mut subs, "n/1", Some(&a)), Vec::<String>::new());
        assert_eq!(clients(&mut subs, "n/1", Some(&b)), ["a@0"]);
        assert_eq!(clients(&mut subs, "n/1", Some(&a)), Vec::<String>::new());
        subs.insert("$share/g/s/1", &a, entry(QoS::AtMostOnce, false));
        subs.insert("$share/g/s/1", &b, entry(QoS::AtMostOnce, false));
        let first = clients(&mut subs, "s/1", None);
        let second = clients(&mut subs, "s/1", None);
        assert_ne!(first, second, "round robin goes on");
        assert!(!subs.cache.contains_key("s/1") && !subs.cache.contains_key("n/1"));
    }

    #[test]
    fn an_ordinary_subscription_key_is_one_pointer_and_a_tag() {
        // The tree holds one key per subscriber of a filter: 10,000 devices subscribed to
        // one topic cost 16,384 map slots of this size (and the entry beside it).
        assert!(
            std::mem::size_of::<SubKey>() <= 24,
            "{}",
            std::mem::size_of::<SubKey>()
        );
    }
}
