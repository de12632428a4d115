//! Deterministic, realistic seed data: people with names and e-mails, groups with members.

/// SplitMix64: small, deterministic, good enough for test data.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub(crate) fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const GIVEN: &[&str] = &[
    "Anna", "Ben", "Carla", "David", "Elena", "Felix", "Greta", "Hannes", "Ines", "Jonas", "Katrin", "Lukas", "Maria",
    "Niklas", "Olga", "Paul", "Queenie", "Rafael", "Sofia", "Tobias", "Ursula", "Viktor", "Wiebke", "Xaver", "Yasmin",
    "Zoe", "Amélie", "Jürgen", "Søren", "Zoë",
];
const FAMILY: &[&str] = &[
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Schwarz",
    "Braun",
    "Zimmermann",
    "Hartmann",
    "Rossi",
    "Dubois",
    "García",
    "Smith",
    "O'Brien",
    "Nakamura",
];
const DEPARTMENTS: &[&str] = &[
    "Sales",
    "Finance",
    "Engineering",
    "Support",
    "Marketing",
    "HR",
    "Legal",
    "Operations",
    "Procurement",
    "Research",
];
const REGIONS: &[&str] = &["EMEA", "APJ", "NA", "LATAM", "MEE"];

/// A generated person.
#[derive(Clone, Debug)]
pub(crate) struct Person {
    pub given: String,
    pub family: String,
    pub user_name: String,
    /// (address, primary, type)
    pub emails: Vec<(String, bool, &'static str)>,
    pub employee_number: String,
    pub department: String,
}

fn ascii_fold(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            'ä' => "ae".chars().collect::<Vec<_>>(),
            'ö' | 'ø' => "oe".chars().collect(),
            'ü' => "ue".chars().collect(),
            'ß' => "ss".chars().collect(),
            'é' | 'ë' => vec!['e'],
            'í' => vec!['i'],
            'á' => vec!['a'],
            '\'' => vec![],
            c => c.to_lowercase().collect(),
        })
        .collect()
}

/// The `i`-th person of a seeded population (user names are unique by construction).
pub(crate) fn person(rng: &mut Rng, i: usize) -> Person {
    let given = rng.pick(GIVEN).to_string();
    let family = rng.pick(FAMILY).to_string();
    let local = format!("{}.{}{}", ascii_fold(&given), ascii_fold(&family), i + 1);
    let mut emails = vec![(format!("{local}@example.com"), true, "work")];
    if rng.below(3) == 0 {
        emails.push((format!("{local}@mail.example.org"), false, "home"));
        if rng.below(2) == 0 {
            // The primary one is not always first.
            emails.swap(0, 1);
        }
    }
    Person {
        given,
        family,
        user_name: local,
        emails,
        employee_number: format!("{:06}", 100_000 + i),
        department: rng.pick(DEPARTMENTS).to_string(),
    }
}

/// The `j`-th group name (unique by construction), e.g. `Sales-EMEA-3`.
pub(crate) fn group_name(j: usize) -> String {
    let dep = DEPARTMENTS[j % DEPARTMENTS.len()];
    let reg = REGIONS[(j / DEPARTMENTS.len()) % REGIONS.len()];
    format!("{dep}-{reg}-{}", j + 1)
}

/// Members (user indices) of each of `groups` groups over `users` users: every user is in one
/// group, about a fifth also in a second one.
pub(crate) fn memberships(rng: &mut Rng, users: usize, groups: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); groups];
    if groups == 0 {
        return out;
    }
    for u in 0..users {
        let first = u % groups;
        out[first].push(u);
        if groups > 1 && rng.below(5) == 0 {
            let second = (first + 1 + rng.below(groups - 1)) % groups;
            out[second].push(u);
        }
    }
    out
}
